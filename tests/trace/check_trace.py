#!/usr/bin/env python3
"""Check the Chrome trace-event file trace_pipeline wrote (tests/trace).

Usage: check_trace.py PROGRAM MODE TMPDIR
  MODE api: PROGRAM traces itself with weir_trace_start/stop;
  MODE env: WEIR_TRACE=FILE, written at the runtime's destroy.
The file must parse as JSON (Python's json module, a real parser) and hold:
worker tracks "worker 0" and "worker 1"; a complete event (ph X) on a
worker track named after each stage of the known pipelines, whose fused
terms appear by name; a "fork-join root" and "job" events; a track of its
own for the blocking source's thread with its event; a depth counter for a
stream; well-formed X events (ts, dur >= 0) and metadata.
"""
import json
import os
import subprocess
import sys

prog, mode, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(tmp, exist_ok=True)
path = os.path.join(tmp, 'trace-%s.json' % mode)
if os.path.exists(path):
    os.remove(path)
env = dict(os.environ)
env.pop('WEIR_TRACE', None)
args = [prog]
if mode == 'api':
    args.append(path)
else:
    env['WEIR_TRACE'] = path
subprocess.run(args, env=env, check=True)

with open(path) as f:
    doc = json.load(f)
events = doc['traceEvents']
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


names = {e['tid']: e['args']['name'] for e in events
         if e.get('ph') == 'M' and e.get('name') == 'thread_name'}
workers = {tid for tid, n in names.items() if n.startswith('worker ')}
check({'worker 0', 'worker 1'} <= set(names.values()), 'worker tracks: %s' % sorted(names.values()))
xs = [e for e in events if e.get('ph') == 'X']
for e in xs:
    check(e['dur'] >= 0 and e['ts'] >= 0 and e['tid'] in names, 'bad X event %r' % e)
stages = {e['name'] for e in xs if e['name'].startswith('stage: ')}
on_workers = {e['name'] for e in xs if e['tid'] in workers}
for term in ['numbers', 'double', 'odd', 'total', 'twice', 'sink']:
    check(any(term in s for s in stages & on_workers),
          'no stage event on a worker track names term %r (stages: %s)' % (term, sorted(stages)))
check('fork-join root' in on_workers, 'no fork-join root event')
check('job' in on_workers, 'no job event')
ticks = [tid for tid, n in names.items() if 'ticks' in n]
check(len(ticks) == 1, 'no track for the blocking source ticks: %s' % sorted(names.values()))
check(any(e['tid'] in ticks and e['name'] == 'blocking source' for e in xs),
      'no event on the blocking source track')
counters = {e['name'] for e in events if e.get('ph') == 'C'}
check(any(c.startswith('depth ') for c in counters), 'no depth counter: %s' % sorted(counters))
check(doc['otherData']['dropped_events'] == 0, 'dropped events')

if fails:
    for f in fails:
        print('check_trace:', f)
    sys.exit(1)
print('check_trace: %s ok: %d events, %d tracks, stages %s' % (mode, len(events), len(names),
                                                               sorted(stages)))
