#!/usr/bin/env bash
# Train (or resume) the zoo's models on a CPU, as two independent queues of one-thread runs
# so a 2-core machine runs both at once:  scripts/train_zoo.sh A & scripts/train_zoo.sh B
# Each run lives in ~/.cache/kdlic/runs/NAME and resumes from its last.pt when killed;
# `scripts/train_zoo.sh export NAME...` then copies their best checkpoints into the package.
# The student-n16-{l1,none} pair at lambda 0.025 was trained the same way (4000 steps).
# The five teachers (issue 11): `scripts/train_zoo.sh teachers`, the long teacher-q5 run's
# two phases and four rate fine-tunes of its end (docs/training.md).
set -euo pipefail
KDLIC=${KDLIC:-.venv/bin/kdlic}
RUNS=${RUNS:-$HOME/.cache/kdlic/runs}

run() {  # run NAME COMMAND ARGS...: start or resume one run
    local name=$1; shift
    local resume=()
    [[ -f $RUNS/$name/last.pt ]] && resume=(--resume)
    echo "== $name $(date +%H:%M:%S)"
    "$KDLIC" "$@" --run-dir "$RUNS/$name" --no-progress "${resume[@]}"
}

teacher() {  # teacher NAME LAMBDA
    run "$1" train -c configs/teacher-finetune-cpu.yaml --lmbda "$2"
}

student() {  # student NAME TEACHER N PRESET STEPS
    run "$1" distill -c configs/student-cpu.yaml --teacher "$2" --N "$3" --preset "$4" \
        --steps "$5"
}

rates() {
    for rate in "q1 0.0018" "q2 0.0035" "q3 0.0067" "q4 0.0130"; do
        read -r q lmbda <<< "$rate"
        run "teacher-$q-long-2" train -c configs/teacher-rate-finetune.yaml --lmbda "$lmbda"
    done
}

case ${1:-} in
teachers)  # issue 11's five teachers: the long run's two phases, then the four rates
    run teacher-q5-long train -c configs/teacher-q5-long.yaml
    run teacher-q5-long-2 train -c configs/teacher-q5-long-2.yaml
    rates
    ;;
rates)  # the four rate fine-tunes of phase 2's end, one after another on two threads
    rates
    ;;
A)
    teacher teacher-q3 0.0067
    student student-n16-l1-q3 "$RUNS/teacher-q3/best.pt" 16 L1 4000
    student student-n16-none-q3 "$RUNS/teacher-q3/best.pt" 16 none 4000
    student student-n32-l1 teacher-q5 32 L1 4000
    student student-n64-l1 teacher-q5 64 L1 4000
    student student-n64-none teacher-q5 64 none 4000
    student student-n96-l1 teacher-q5 96 L1 4000
    ;;
B)
    teacher teacher-q1 0.0018
    student student-n16-l1-q1 "$RUNS/teacher-q1/best.pt" 16 L1 4000
    student student-n16-none-q1 "$RUNS/teacher-q1/best.pt" 16 none 4000
    student student-n32-none teacher-q5 32 none 4000
    student student-n64-l2 teacher-q5 64 L2 4000
    student student-n64-kld teacher-q5 64 kld 4000
    student student-n112-l1 teacher-q5 112 L1 4000
    ;;
export)  # copy the finished runs into the package (fp16, Kodak figures in the metadata)
    shift
    for name in "$@"; do
        run_dir=$RUNS/$name
        [[ $name == teacher-q? ]] && run_dir=$RUNS/$name-long-2  # the teachers' runs
        teacher=()
        case $name in
        student-*-q1) teacher=(--teacher teacher-q1) ;;
        student-*-q3) teacher=(--teacher teacher-q3) ;;
        esac
        "$KDLIC" zoo export "$run_dir/best.pt" "$name" --images ../shared/data/kodak \
            "${teacher[@]}"
    done
    ;;
*)
    echo "usage: $0 A|B   (two queues; run both at once on a 2-core machine)" >&2
    echo "       $0 teachers   (the five teachers, one after another)" >&2
    echo "       $0 rates   (the four rate fine-tunes of the long run's end)" >&2
    echo "       $0 export NAME...   (put finished runs into the zoo)" >&2
    exit 2
    ;;
esac
