#!/usr/bin/env bash
# docs/report.png: the --html page of a 10,000-line run through the simulator with faults (5% 429s,
# 2% 5xx, two attempts a line so a few fail), as headless Chromium shows it.
# Needs the report extra and chromium. Usage: scripts/report_screenshot.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
port=${1:-18777}
work=$(mktemp -d)
cd "$work"  # the page shows the input and output paths as given: short ones
python - evals.jsonl <<'PY'
import json, random, sys
random.seed(3)
models = ["gpt-4o-mini"] * 6 + ["gpt-4.1-mini"] * 3 + ["o4-mini"]
with open(sys.argv[1], "w") as f:
    for i in range(10_000):
        model = models[i % 10]
        body = {"model": model, "messages": [{"role": "user", "content": "Label this review: " + "word " * random.randint(5, 80)}],
                "max_completion_tokens" if model == "o4-mini" else "max_tokens": random.choice([50, 100, 200])}
        f.write(json.dumps({"custom_id": f"review-{i:05d}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
PY
python -m batchrun mock-server --port "$port" --rate-429 0.05 --rate-500 0.02 --latency-ms 40 --jitter-ms 120 --seed 7 \
    > server.log 2>&1 &
server=$!
trap 'kill $server' EXIT
sleep 2
OPENAI_API_KEY=sk-simulator python -m batchrun run evals.jsonl --base-url "http://127.0.0.1:$port/v1" -q \
    --concurrency 64 --max-attempts 2 --max-cost 2 --html report.html || true  # exit 1: some lines failed
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,3200 \
    --screenshot="$repo/docs/report.png" "file://$work/report.html"
python - "$repo/docs/report.png" <<'PY'  # the window is sized for the longest page: crop the blank below it
import sys
from PIL import Image, ImageChops
with Image.open(sys.argv[1]) as image:
    blank = Image.new(image.mode, image.size, image.getpixel((0, image.height - 1)))
    box = ImageChops.difference(image, blank).getbbox()
    cropped = image.crop((0, 0, image.width, min(image.height, box[3] + 24))) if box else image.copy()
cropped.save(sys.argv[1], optimize=True)
PY
echo "docs/report.png from $work/report.html"
