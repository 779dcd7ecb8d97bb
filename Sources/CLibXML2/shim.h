#ifndef SHADOWBRIDGE_CLIBXML2_SHIM_H
#define SHADOWBRIDGE_CLIBXML2_SHIM_H
// Debian builds libxml2 with ICU; its headers then pull in ICU's, which clash with
// Foundation's private ICU. We never use libxml2's ICU features.
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#endif
