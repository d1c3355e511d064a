/* Clinical room, internal: rule sets as data (rules/NAME.json) and the engine that judges a subject
 * against them. The files' schema is in docs/clinical.md. */
#ifndef SARCO_CLINICAL_H
#define SARCO_CLINICAL_H

#include <jansson.h>
#include <stddef.h>

#include "lib/core/core.h"

/* One compiled-in rules file (tools/embed_rules.sh writes the table, ended by a NULL name). */
typedef struct sarco_rules_blob {
    const char *name;
    const char *text;
    size_t size;
} sarco_rules_blob;
SARCO_INTERNAL extern const sarco_rules_blob sarco_rules_builtin[];

/* Three-valued logic of the verdicts: a criterion whose measurement is missing is unknown. */
typedef enum sarco_tv { SARCO_TV_FALSE = 0, SARCO_TV_TRUE = 1, SARCO_TV_UNKNOWN = 2 } sarco_tv;

/* Finds (name or path; see sarco_diagnose), parses and validates a rule set. *out is a new
 * reference; *source (static or owned by *out) says where it came from ("builtin" or the path). */
SARCO_INTERNAL sarco_status sarco_rules_load(sarco_context *ctx, const char *name_or_path, json_t **out,
                                             const char **source);

/* Checks a parsed rule set against the schema (what docs/clinical.md lists); `where` names it. */
SARCO_INTERNAL sarco_status sarco_rules_validate(sarco_context *ctx, const json_t *r, const char *where);

/* v op t for the operators "<", "<=", ">", ">=" (numbers); -1 for an unknown operator. */
SARCO_INTERNAL int sarco_rules_compare(double v, const char *op, double t);

#endif
