#include "CICUShim.h"
#include <pthread.h>
#include <unicode/ustring.h>
#include <unicode/usprep.h>

static UStringPrepProfile *profiles[3];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void open_profiles(void) {
    UErrorCode status = U_ZERO_ERROR;
    profiles[SHADOWBRIDGE_NODEPREP] = usprep_openByType(USPREP_RFC3920_NODEPREP, &status);
    status = U_ZERO_ERROR;
    profiles[SHADOWBRIDGE_RESOURCEPREP] = usprep_openByType(USPREP_RFC3920_RESOURCEPREP, &status);
    status = U_ZERO_ERROR;
    profiles[SHADOWBRIDGE_NAMEPREP] = usprep_openByType(USPREP_RFC3491_NAMEPREP, &status);
}

int32_t shadowbridge_stringprep(int profile, int allow_unassigned, const char *input, int32_t length,
                                char *output, int32_t capacity) {
    if (profile < 0 || profile > 2 || length < 0) return -1;
    pthread_once(&once, open_profiles);
    if (profiles[profile] == NULL) return -1;

    UChar source[1024];
    UChar prepared[2048];
    int32_t sourceLength = 0;
    UErrorCode status = U_ZERO_ERROR;
    u_strFromUTF8(source, 1024, &sourceLength, input, length, &status);
    if (status == U_BUFFER_OVERFLOW_ERROR || sourceLength > 1024) return -2;
    if (U_FAILURE(status)) return -1;

    status = U_ZERO_ERROR;
    int32_t preparedLength = usprep_prepare(profiles[profile], source, sourceLength, prepared, 2048,
                                            allow_unassigned ? USPREP_ALLOW_UNASSIGNED : USPREP_DEFAULT, NULL, &status);
    if (status == U_BUFFER_OVERFLOW_ERROR) return -2;
    if (U_FAILURE(status)) return -1;

    int32_t outputLength = 0;
    status = U_ZERO_ERROR;
    u_strToUTF8(output, capacity, &outputLength, prepared, preparedLength, &status);
    if (status == U_BUFFER_OVERFLOW_ERROR || outputLength > capacity) return -2;
    if (U_FAILURE(status)) return -1;
    return outputLength;
}
