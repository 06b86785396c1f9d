/* weir runtime — the version of the library, for programs that want to know
 * which build they run against (the headers' is WEIR_VERSION_STRING). */
#include "internal.h"

const char *weir_version(void)
{
    return WEIR_VERSION_STRING;
}
