/* placeholder: being written */
typedef int weir__placeholder_topology_sysconf;
