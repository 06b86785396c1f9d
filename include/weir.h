/*
 * weir — a per-core work-stealing task runtime with a batched stream-term layer.
 * Umbrella header: include this one.
 */
#ifndef WEIR_H
#define WEIR_H

#include "weir/common.h"
#include "weir/config.h"
#include "weir/stats.h"
#include "weir/runtime.h"
#include "weir/job.h"
#include "weir/timer.h"
#include "weir/task.h"
#include "weir/trace.h"
#include "weir/terms.h"

#endif /* WEIR_H */
