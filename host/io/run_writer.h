/* Writing a run (run_writer.c) in its two steps, so that a run described in
 * memory (host/engine/run_api.c) is written exactly as eccolo generate
 * writes it:
 *   ecc_run_record        run.json's content: version, run id, model, prompt,
 *                         tokens and their text, parameters, explanations,
 *                         device, timings (without the file checks and index)
 *   ecc_run_write_record  the pair DIR/tensors.safetensors + DIR/run.json,
 *                         with the record's run id (both files written whole,
 *                         then renamed: docs/RELIABILITY.md)
 * ecc_run_write (eccolo.h) is the two with a fresh run id. */
#ifndef ECC_RUN_WRITER_H
#define ECC_RUN_WRITER_H

#include <cjson/cJSON.h>

#include "engine/run.h"
#include "io/safetensors.h"

ecc_status ecc_run_record(cJSON **out, const ecc_run *r, const ecc_model *m, const char *prompt_text,
                          const char *run_id);
ecc_status ecc_run_write_record(const ecc_run *r, const cJSON *record, const char *dir);
/* The tensors a run writes, in order: token_ids, token_logprobs, then what it
 * computed; metadata n_input, format and run_id. Data borrowed from r. */
ecc_status ecc_run_collect_tensors(ecc_st_writer *w, const ecc_run *r, const char *run_id);

#endif
