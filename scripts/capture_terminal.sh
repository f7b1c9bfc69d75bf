#!/bin/sh
# What batchrun shows a person, captured from real terminals (tmux) into docs/terminal/, against
# the built-in simulator with rate limits, some 429s and some 500s, on a 2,000-line input:
#   progress-80.txt, progress-120.txt  the progress lines mid-run at 80 and 120 columns
#   summary-80.txt                     a run's end: its last progress lines and the summary
#   resumed-80.txt                     stopped by --max-cost, then run again with a higher cap
#   stopped-before-any-line-80.txt     a wrong --base-url: why, and what next
#   compare-80.txt                     report A B --html FILE: runs side by side, where the page went
# Needs tmux and batchrun on PATH; takes about two minutes.
#
#   scripts/capture_terminal.sh [DIR]      # DIR: where the captures go (docs/terminal)
set -eu
dest=$(cd "$(dirname "$0")/.." && pwd)/${1:-docs/terminal}
mkdir -p "$dest"
work=$(mktemp -d)
session=batchrun-capture-$$
# A tmux server of its own (-L): another one's sessions are left alone, and this one's by it.
tmux() { command tmux -L "$session" "$@"; }
cleanup() {
    tmux kill-server 2>/dev/null || true
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
python3 - <<'EOF'
import json
with open("in.jsonl", "w") as f:
    for i in range(2000):
        body = {"model": "gpt-4o-mini", "max_tokens": 64, "messages": [{"role": "user", "content": f"say {i}"}]}
        f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
EOF
# A simulator with limits, some 429s and some 500s, so every counter has something to show.
batchrun mock-server --port 0 --latency-ms 40 --jitter-ms 40 --rpm 3000 --tpm 400000 --rate-429 0.03 \
    --rate-500 0.02 --retry-after 0.2 >server.log 2>&1 &
server=$!
while ! grep -q "listening on" server.log; do sleep 0.1; done
url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' server.log)
export OPENAI_API_KEY=sk-capture
br=$(command -v batchrun)  # a login shell in tmux may have another PATH
run="$br run in.jsonl --base-url $url -c 4 --max-attempts 2"

# $1 width, $2 command, $3 seconds to wait, $4 file: the screen after that long, blank rows dropped
capture() {
    tmux new-session -d -s "$session-$1" -x "$1" -y 40 -c "$work" -e "PYTHONPATH=${PYTHONPATH:-}" \
        -e "OPENAI_API_KEY=$OPENAI_API_KEY"
    tmux send-keys -t "$session-$1" "clear; $2; echo \"exit \$?\"" Enter
    sleep "$3"
    tmux capture-pane -p -t "$session-$1" | sed -e '/^$/N;/^\n$/D' >"$dest/$4"
    tmux kill-session -t "$session-$1"
}
capture 80 "$run -o p80.jsonl --max-cost 1" 12 progress-80.txt &
narrow=$!
capture 120 "$run -o p120.jsonl --max-cost 1" 12 progress-120.txt
wait "$narrow"
sleep 30  # both runs end
capture 80 "$run -o s80.jsonl --max-cost 1" 45 summary-80.txt
capture 80 "$run -o r80.jsonl --max-cost 0.01 >/dev/null 2>&1; $run -o r80.jsonl --max-cost 1" 45 resumed-80.txt
capture 80 "$br run in.jsonl --base-url ${url%/v1}/nope -o f80.jsonl" 8 stopped-before-any-line-80.txt
capture 80 "$br report s80.jsonl r80.jsonl --html compare.html" 10 compare-80.txt
