/* The term layer lives here (issue 3); this keeps the static library non-empty. */
int weir__terms_placeholder(void);
int weir__terms_placeholder(void) { return 0; }
