#!/usr/bin/env bash
# Synthesise two-party stereo test calls (agent = left/channel 0,
# customer = right/channel 1) from the call descriptions in scripts/calls/*.txt.
#
#   scripts/make-calls.sh              # build every call
#   scripts/make-calls.sh basic_call   # build only the named call(s)
#
# Output: tests/fixtures/calls/<call>.wav and tests/fixtures/calls/<call>.ref.json
#
# Call file format (one utterance per line, '#' starts a comment line):
#   @rate 16000        output sample rate (default 16000)
#   @tail 1.0          seconds of silence after the last utterance (default 1.0)
#   @speed 160         espeak-ng words per minute (default 160)
#   <start_s> <agent|customer> <espeak-ng voice> <text ...>
# start_s is where the utterance's first sound begins (espeak-ng's own leading
# and trailing silence is trimmed off), so the .ref.json start_s/end_s are the
# bounds of audible speech.
#
# Needs only espeak-ng (1.51) and sox (14.4.2). Deterministic: every sox call
# gets -D (no dither), so reruns give byte-identical files.
set -euo pipefail
export LC_ALL=C

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
calls_dir="$root/scripts/calls"
out_dir="$root/tests/fixtures/calls"

for tool in espeak-ng sox soxi; do
    command -v "$tool" >/dev/null || { echo "make-calls: $tool not found" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# JSON-escape a string (the texts are plain English, this covers " and \).
json_str() {
    local s="$1"
    s="${s//\\/\\\\}"
    s="${s//\"/\\\"}"
    printf '"%s"' "$s"
}

make_call() {
    local name="$1" desc="$calls_dir/$1.txt"
    [[ -f "$desc" ]] || { echo "make-calls: no such call description: $desc" >&2; exit 1; }

    local rate=16000 tail=1.0 speed=160
    local work="$tmp/$name"
    mkdir -p "$work"
    local -a agent_in=() customer_in=()
    local refs="$work/refs.tsv"
    : >"$refs"

    local n=0 lineno=0 line start party voice text
    while IFS= read -r line || [[ -n "$line" ]]; do
        lineno=$((lineno + 1))
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        if [[ "$line" =~ ^@(rate|tail|speed)[[:space:]]+([0-9.]+)[[:space:]]*$ ]]; then
            case "${BASH_REMATCH[1]}" in
                rate) rate="${BASH_REMATCH[2]}" ;;
                tail) tail="${BASH_REMATCH[2]}" ;;
                speed) speed="${BASH_REMATCH[2]}" ;;
            esac
            continue
        fi
        read -r start party voice text <<<"$line"
        if ! [[ "$start" =~ ^[0-9]+(\.[0-9]+)?$ && ( "$party" == agent || "$party" == customer ) && -n "$voice" && -n "$text" ]]; then
            echo "make-calls: $desc:$lineno: expected '<start_s> <agent|customer> <voice> <text>'" >&2
            exit 1
        fi
        n=$((n + 1))
        local raw="$work/u$n.raw.wav" trimmed="$work/u$n.trim.wav" placed="$work/u$n.wav"
        # espeak-ng: 22.05 kHz mono 16-bit WAV.
        espeak-ng -v "$voice" -s "$speed" -w "$raw" -- "$text"
        # Trim espeak-ng's leading/trailing silence so start_s is the speech onset.
        sox -D "$raw" "$trimmed" silence 1 0.01 -60d reverse silence 1 0.01 -60d reverse
        local dur
        dur="$(soxi -D "$trimmed")"
        sox -D "$trimmed" "$placed" pad "$start" 0
        if [[ "$party" == agent ]]; then agent_in+=(-v 1 "$placed"); else customer_in+=(-v 1 "$placed"); fi
        awk -v s="$start" -v d="$dur" -v p="$party" -v t="$text" \
            'BEGIN { printf "%.2f\t%s\t%.2f\t%s\n", s, p, s + d, t }' >>"$refs"
    done <"$desc"

    ((${#agent_in[@]} > 0 && ${#customer_in[@]} > 0)) || {
        echo "make-calls: $desc: needs at least one agent and one customer utterance" >&2
        exit 1
    }

    # One track per party. -v 1 per input: sox -m would otherwise divide each
    # input by the number of inputs. A party's utterances never overlap, so
    # unit-gain summing keeps espeak-ng's natural level and cannot clip.
    local party_name
    for party_name in agent customer; do
        local -n inputs="${party_name}_in"
        if ((${#inputs[@]} == 3)); then
            sox -D "${inputs[2]}" "$work/$party_name.wav"
        else
            sox -D -m "${inputs[@]}" "$work/$party_name.wav"
        fi
        unset -n inputs
    done

    # Stereo: agent left, customer right (shorter track padded with silence by
    # sox), resampled to the call rate, 16-bit PCM, trailing silence.
    mkdir -p "$out_dir"
    sox -D -M "$work/agent.wav" "$work/customer.wav" \
        -b 16 -e signed-integer "$out_dir/$name.wav" rate -h "$rate" pad 0 "$tail"

    # Reference timings, sorted by start time.
    {
        printf '{"file":"%s.wav","sample_rate":%s,"channels":2,"utterances":[' "$name" "$rate"
        local first=1 s p e t
        while IFS=$'\t' read -r s p e t; do
            ((first)) || printf ','
            first=0
            printf '\n  {"channel":"%s","start_s":%s,"end_s":%s,"text":%s}' "$p" "$s" "$e" "$(json_str "$t")"
        done < <(sort -s -t$'\t' -k1,1n "$refs")
        printf '\n]}\n'
    } >"$out_dir/$name.ref.json"

    echo "make-calls: $out_dir/$name.wav ($(soxi -D "$out_dir/$name.wav") s, $rate Hz, $n utterances)"
}

if (($# > 0)); then
    calls=("$@")
else
    calls=()
    for f in "$calls_dir"/*.txt; do
        [[ -e "$f" ]] || continue
        f="${f##*/}"
        calls+=("${f%.txt}")
    done
    ((${#calls[@]} > 0)) || { echo "make-calls: no call descriptions in $calls_dir" >&2; exit 1; }
fi

for c in "${calls[@]}"; do
    make_call "$c"
done
