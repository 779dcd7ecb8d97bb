#include "RawSAX.h"
#include <libxml/parser.h>
#include <string.h>

static void start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                  int nbNamespaces, const xmlChar **namespaces, int nbAttributes, int nbDefaulted,
                  const xmlChar **attributes) {
    RawSAXCounts *counts = ctx;
    counts->elements += 1;
    counts->attributes += (size_t)nbAttributes;
}

static void end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {}

static void characters(void *ctx, const xmlChar *chars, int length) {
    RawSAXCounts *counts = ctx;
    counts->textBytes += (size_t)length;
}

RawSAXCounts rawsax_parse(const char *bytes, size_t length, size_t chunk) {
    RawSAXCounts counts = {0, 0, 0, 0};
    xmlSAXHandler handler;
    memset(&handler, 0, sizeof handler);
    handler.initialized = XML_SAX2_MAGIC;
    handler.startElementNs = start;
    handler.endElementNs = end;
    handler.characters = characters;
    xmlParserCtxtPtr context = xmlCreatePushParserCtxt(&handler, &counts, NULL, 0, NULL);
    xmlCtxtUseOptions(context, XML_PARSE_NONET);
    for (size_t offset = 0; offset < length && counts.error == 0; offset += chunk) {
        size_t n = length - offset < chunk ? length - offset : chunk;
        counts.error = xmlParseChunk(context, bytes + offset, (int)n, 0);
    }
    xmlFreeParserCtxt(context);
    return counts;
}
