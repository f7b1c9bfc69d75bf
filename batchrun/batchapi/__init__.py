"""``batchrun run --via batch``: the same input through the provider's Batch API, at its price.

    plan.py      split the input into batches within the provider's limits (`BatchLimits`)
    ledger.py    the batches' ids and states beside the output, recorded as soon as they exist
    api.py       the ``/v1/files`` and ``/v1/batches`` calls, through the run's transport
    lifecycle.py upload, submit, poll, cancel and download; then the engine writes the output
    pending.py   what a run returns while its batches are at the provider (`Pending`)
    answers.py   each batch's output and error files, in input order, for the engine to write

The lines are written by the engine itself (`engine.run_batch`, with the batches' answers as a
source, `engine.sources`): the ordered output, errors file, report, checkpoint and publishing
are an online run's, and a line a batch did not answer can still be sent online
(``--batch-deadline``).
"""
