#include <criterion/criterion.h>
Test(placeholder, test_jobdeque) { cr_assert(1); }
