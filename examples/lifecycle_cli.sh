#!/usr/bin/env bash
# Two agent workflows through the agentledger CLI (an approval workflow paused for approval
# and resumed, and a multi-turn investigation), checking the resume decision at each
# step (the exit code of `agentledger sessions should-resume`: 0 may resume, 1 not), plus a
# session that times out and one with three errors.
#
#   examples/lifecycle_cli.sh [STORE_URL]
#
# STORE_URL: any store that outlives one command (sqlite:///…, file://…, postgresql://…);
# default: a SQLite file in a temporary folder, removed at exit. Set $AGENTLEDGER to the
# command to run (default: `agentledger` on the PATH, else this checkout's .venv).
#
# Time: every command runs with $AGENTLEDGER_NOW set (a testing aid: the CLI's clock, used
# for event timestamps and idle times), so "ten minutes later" and "35 minutes later" take
# no time at all. Exits 0 when every check passes, 1 at the first that does not.
set -euo pipefail

# The command: $AGENTLEDGER, else `agentledger` on the PATH, else this checkout's .venv.
HERE=$(cd "$(dirname "$0")" && pwd)
if [[ -n ${AGENTLEDGER:-} ]]; then
    AL=$AGENTLEDGER
elif command -v agentledger >/dev/null; then
    AL=agentledger
elif [[ -x $HERE/../.venv/bin/agentledger ]]; then
    AL=$HERE/../.venv/bin/agentledger
else
    echo "agentledger not found: activate the venv, or set \$AGENTLEDGER" >&2
    exit 2
fi
if [[ $# -ge 1 ]]; then
    URL=$1
else
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    URL="sqlite:///$TMP/lifecycle.db"
fi
case $URL in
memory://*)
    echo "a memory:// store does not outlive one command; give a sqlite, file or postgresql URL" >&2
    exit 2
    ;;
esac
export AGENTLEDGER_STORE=$URL

at() { export AGENTLEDGER_NOW="2026-01-08T$1Z"; } # set the CLI's clock (UTC)
step() { printf '\n== %s (%s)\n' "$1" "${AGENTLEDGER_NOW#2026-01-08T}"; }
fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# expect_resume EXIT_CODE ID REASON: ask should-resume, check its exit code and reason.
expect_resume() {
    local want=$1 id=$2 reason=$3 out code=0
    out=$("$AL" sessions should-resume "$id" --json) || code=$?
    [[ $code == "$want" ]] || fail "should-resume $id exited $code, not $want: $out"
    grep -q "\"reason\": \"$reason\"" <<<"$out" || fail "should-resume $id: not $reason: $out"
    echo "should-resume -> exit $code, $reason"
}

# expect TEXT PATTERN...: every (fixed-string) pattern occurs in TEXT.
expect() {
    local text=$1 pattern
    shift
    for pattern in "$@"; do
        grep -qF -- "$pattern" <<<"$text" || fail "expected $pattern in: $text"
    done
}

# the first "agent_id" of a hook's JSON output (the top-level one)
agent_id_of() { sed -n 's/^  "agent_id": "\(.*\)",$/\1/p' <<<"$1" | head -n 1; }

echo "store: $URL"

# -- Example 1: approval workflow -----------------------------------------------------------
at 18:05:30
step "Example 1: approval workflow"
ID=$("$AL" sessions create --agent terraform-architect --purpose approval_workflow \
    --metadata '{"task_id": "T001", "workspace": "prod"}')
echo "created $ID"
expect_resume 1 "$ID" phase_not_resumable

at 18:06:00
step "the agent plans"
"$AL" sessions update "$ID" --phase planning --metadata '{"plan_file": "plan.json"}'

at 18:07:00
step "the agent asks for approval and pauses"
"$AL" sessions update "$ID" --phase approval
"$AL" sessions suspend "$ID" --reason "waiting for approval"

at 18:17:00
step "ten minutes later the user approves: pre-delegate resumes the session"
expect_resume 0 "$ID" session_resumable
OUT=$(printf '{"agent_name": "terraform-architect", "task_id": "T001", "agent_id": "%s", "task_description": "apply the approved plan", "metadata": {}}' "$ID" |
    "$AL" hook pre-delegate)
expect "$OUT" '"should_resume": true' '"previous_phase": "approval"' '"plan_file": "plan.json"'
[[ $(agent_id_of "$OUT") == "$ID" ]] || fail "pre-delegate did not resume $ID: $OUT"
echo "pre-delegate -> should_resume true, agent_id $ID, plan_file plan.json"

at 18:18:00
step "the agent executes"
"$AL" sessions update "$ID" --phase executing

at 18:20:00
step "the agent stops: subagent-stop finalizes the session"
OUT=$(printf '{"agent_id": "%s", "exit_code": 0, "summary": "Terraform applied successfully"}' "$ID" |
    "$AL" hook subagent-stop)
expect "$OUT" '"finalized": true' '"outcome": "completed"' '"duration_seconds": 870.0'
echo "subagent-stop -> finalized, completed after 870 s"
expect_resume 1 "$ID" terminated

# -- Example 2: multi-turn investigation ----------------------------------------------------
at 18:30:00
step "Example 2: multi-turn investigation, turn 1"
ID2=$("$AL" sessions create --agent gitops-operator --purpose investigation \
    --metadata '{"issue": "pod-crash-loop"}')
echo "created $ID2"
"$AL" sessions update "$ID2" --phase investigating \
    --metadata '{"findings": ["OOMKilled", "resource limits"]}'

at 18:35:00
step "turn 2, five minutes later: continue from the findings"
expect_resume 0 "$ID2" session_resumable
SESSION=$("$AL" sessions get "$ID2" --json)
expect "$SESSION" '"OOMKilled"' '"resource limits"'
"$AL" sessions update "$ID2" \
    --metadata '{"findings": ["OOMKilled", "resource limits", "config issue in deployment"]}'

at 18:38:00
step "turn 3: the solution"
"$AL" sessions update "$ID2" --phase planning --metadata '{"solution": "increase memory limits"}'
expect_resume 0 "$ID2" session_resumable

at 18:40:00
step "turn 4: apply it"
"$AL" sessions update "$ID2" --phase executing
"$AL" sessions finalize "$ID2" completed --summary "Fixed pod crash loop"
expect "$("$AL" sessions get "$ID2" --json)" '"config issue in deployment"' \
    '"solution": "increase memory limits"' '"status": "terminated"' '"outcome": "completed"'

# -- A session that times out ---------------------------------------------------------------
at 18:45:00
step "a follow-up investigation, left idle"
ID3=$("$AL" sessions create --agent gitops-operator --purpose follow_up --phase investigating)
expect_resume 0 "$ID3" session_resumable

at 19:20:00
step "35 minutes later: too long idle, pre-delegate starts a new session"
expect_resume 1 "$ID3" timeout_exceeded
OUT=$(printf '{"agent_name": "gitops-operator", "task_id": "T003", "agent_id": "%s", "task_description": "follow-up, again"}' "$ID3" |
    "$AL" hook pre-delegate)
expect "$OUT" '"should_resume": false' '"reason": "timeout_exceeded"' "\"previous_agent_id\": \"$ID3\""
NEW=$(agent_id_of "$OUT")
[[ -n $NEW && $NEW != "$ID3" ]] || fail "pre-delegate did not create a new session: $OUT"
echo "pre-delegate -> should_resume false (timeout_exceeded), new agent_id $NEW"

# -- A session with three errors ------------------------------------------------------------
at 19:30:00
step "a drift check that keeps failing"
ID4=$("$AL" sessions create --agent terraform-architect --purpose drift_check --phase investigating)
"$AL" sessions update "$ID4" --error "provider timeout"
"$AL" sessions update "$ID4" --error "provider timeout"
expect_resume 0 "$ID4" session_resumable
"$AL" sessions update "$ID4" --error "state lock held"
expect_resume 1 "$ID4" too_many_errors
"$AL" sessions should-resume "$ID4" || true

# -- Where things stand ---------------------------------------------------------------------
at 19:31:00
step "all sessions"
"$AL" sessions list
step "metrics"
"$AL" stats

printf '\nthe lifecycle through the CLI: all checks passed\n'
