/* placeholder: being written */
typedef int weir__placeholder_park;
