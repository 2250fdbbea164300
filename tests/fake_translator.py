"""A stand-in for `llm -s '...'` in tests: reads English on stdin, writes "KO: <text>" to stdout.

Options pick an input to misbehave on (the input contains the given text):
  --fail-on TEXT     exit 3 with a message on stderr
  --sleep-on TEXT    sleep a minute (for the caller's timeout)
  --hang-on-call N   on the Nth call (counted in --state DIR), write DIR/hung (this pid), sleep
  --edit FILE --edit-on TEXT --old A --new B   replace A by B in FILE first (the editor saves)
  --fail-first N     fail the first N calls (counted in --state DIR), then answer
  --flood-on TEXT --flood-bytes N   answer N bytes of Korean (a runaway model), then exit 0
  --garble-on TEXT --garble-bytes N   N bytes of binary junk and terminal escapes on stderr, exit 3
"""

import argparse
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--fail-on")
parser.add_argument("--sleep-on")
parser.add_argument("--hang-on-call", type=int)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--state")
parser.add_argument("--edit")
parser.add_argument("--edit-on")
parser.add_argument("--old")
parser.add_argument("--new")
parser.add_argument("--prefix", default="KO: ")
parser.add_argument("--flood-on")
parser.add_argument("--flood-bytes", type=int, default=12_000_000)
parser.add_argument("--garble-on")
parser.add_argument("--garble-bytes", type=int, default=1000)
args = parser.parse_args()

english = sys.stdin.buffer.read().decode("utf-8")
call = 0
if args.state:
    counter = Path(args.state) / "calls"
    call = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(call))
if args.fail_on and args.fail_on in english:
    print(f"model refused: {args.fail_on}", file=sys.stderr)
    sys.exit(3)
if args.flood_on and args.flood_on in english:
    chunk = "번역 ".encode() * 10_000
    try:
        for _ in range(args.flood_bytes // len(chunk) + 1):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    except BrokenPipeError:  # the caller stopped reading
        os._exit(0)
    sys.exit(0)
if args.garble_on and args.garble_on in english:
    junk = bytes(range(256)) + b"\x1b[2J\x1b]0;owned\x07\r"
    sys.stderr.buffer.write((junk * (args.garble_bytes // len(junk) + 1))[:args.garble_bytes])
    sys.stderr.buffer.write(b"\nmodel said: \x1b[31mred\x1b[0m \xff\xfe bye\x07\n")
    sys.exit(3)
if args.sleep_on and args.sleep_on in english:
    time.sleep(60)
if args.hang_on_call and call == args.hang_on_call:
    (Path(args.state) / "hung").write_text(str(os.getpid()))
    time.sleep(600)
if args.fail_first and call <= args.fail_first:
    print("503 from the model's API", file=sys.stderr)
    sys.exit(1)
if args.edit and args.edit_on in english:
    path = Path(args.edit)
    path.write_bytes(path.read_bytes().replace(args.old.encode(), args.new.encode(), 1))
sys.stdout.write(args.prefix + english.strip() + "\n")
