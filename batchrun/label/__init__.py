"""``batchrun label``: a data file (CSV, TSV, JSONL) and a prompt template in, the same rows
with the model's answers as new columns out, run on the engine so that ordering, retries,
resume and the report all apply.

    rows.py      stream data rows in and labeled rows out
    formulas.py  cells a spreadsheet would run as formulas, written as text
    template.py  prompt templates with {field} placeholders; plain, ### sections or JSON
    answers.py   what to ask for (free text, --labels, --json-schema) and how to read the answer
    schema.py    the JSON Schema subset answers are checked against
    render.py    rows → OpenAI Batch request lines, every row problem found before any spend
    join.py      rows + ordered results → labeled rows
    workspace.py the work folder beside the output, and what its files say
    job.py       the three steps around the engine (any route), and resume
    preview.py   the dry run: every row rendered and priced

>>> job = LabelJob(Path("reviews.csv"), RequestSpec(load_template(Path("sentiment.txt")), "gpt-4o-mini",
...                Labels.parse_option("positive,negative,neutral")))
>>> outcome = await label_dataset(job, partial(RunConfig, base_url="http://127.0.0.1:8000/v1"))
"""

from __future__ import annotations

from .answers import FreeText, JsonSchema, Labels, load_json_schema
from .job import LabelJob, LabelOutcome, LabelRun, label_dataset
from .preview import preview
from .render import RequestSpec, parse_params
from .template import Template, load_template

__all__ = [
    "FreeText",
    "JsonSchema",
    "LabelJob",
    "LabelOutcome",
    "LabelRun",
    "Labels",
    "RequestSpec",
    "Template",
    "label_dataset",
    "load_json_schema",
    "load_template",
    "parse_params",
    "preview",
]
