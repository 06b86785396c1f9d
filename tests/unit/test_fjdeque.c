#include <criterion/criterion.h>
Test(placeholder, test_fjdeque) { cr_assert(1); }
