#include "CICUShim.h"
#include <pthread.h>
#include <stdlib.h>
#include <unicode/ustring.h>
#include <unicode/usprep.h>
#include <unicode/utrans.h>

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

static UTransliterator *to_ascii;
static pthread_once_t to_ascii_once = PTHREAD_ONCE_INIT;
// One transliterator, used by one thread at a time: nick translation is rare.
static pthread_mutex_t to_ascii_lock = PTHREAD_MUTEX_INITIALIZER;

static void open_to_ascii(void) {
    static const UChar id[] = u"Any-Latin; Latin-ASCII";
    UErrorCode status = U_ZERO_ERROR;
    to_ascii = utrans_openU(id, -1, UTRANS_FORWARD, NULL, 0, NULL, &status);
    if (U_FAILURE(status)) to_ascii = NULL;
}

int32_t shadowbridge_transliterate_ascii(const char *input, int32_t length, char *output, int32_t capacity) {
    if (length < 0 || length > (1 << 20)) return -1;
    pthread_once(&to_ascii_once, open_to_ascii);
    if (to_ascii == NULL) return -1;

    // Room for the text to grow (one Han character becomes a syllable and a space): eight
    // UTF-16 units per input byte, then 32 if that was not enough.
    for (int32_t scale = 8; scale <= 32; scale *= 4) {
        int32_t room = length * scale + 64;
        UChar *text = malloc(sizeof(UChar) * (size_t)room);
        if (text == NULL) return -1;
        int32_t textLength = 0;
        UErrorCode status = U_ZERO_ERROR;
        u_strFromUTF8(text, room, &textLength, input, length, &status);
        if (U_FAILURE(status)) {
            free(text);
            return -1;
        }
        int32_t limit = textLength;
        status = U_ZERO_ERROR;
        pthread_mutex_lock(&to_ascii_lock);
        utrans_transUChars(to_ascii, text, &textLength, room, 0, &limit, &status);
        pthread_mutex_unlock(&to_ascii_lock);
        if (status == U_BUFFER_OVERFLOW_ERROR) {
            free(text);
            continue;
        }
        if (U_FAILURE(status)) {
            free(text);
            return -1;
        }
        int32_t outputLength = 0;
        status = U_ZERO_ERROR;
        u_strToUTF8(output, capacity, &outputLength, text, textLength, &status);
        free(text);
        if (status == U_BUFFER_OVERFLOW_ERROR) return -2;
        if (U_FAILURE(status)) return -1;
        return outputLength;
    }
    return -1;
}
