#!/usr/bin/env bash
# Train (or resume) the zoo's models on a CPU: one run after another, each on the threads
# its config gives (two one-thread runs side by side on a 2-core machine were slower in
# all: memory bandwidth). Each run lives in ~/.cache/kdlic/runs/NAME and resumes from its
# last.pt when killed; `scripts/train_zoo.sh export NAME...` then copies their best
# checkpoints into the package.
# The five teachers (issue 11): `scripts/train_zoo.sh teachers`, the long teacher-q5 run's
# two phases, four rate fine-tunes of its end and their phase 3 (docs/training.md).
# The students (issue 16): `scripts/train_zoo.sh students`, from the final teachers;
# `students2`, the N=64 twins' second phase.
set -euo pipefail
KDLIC=${KDLIC:-.venv/bin/kdlic}
RUNS=${RUNS:-$HOME/.cache/kdlic/runs}
run() {  # run NAME COMMAND ARGS...: start or resume one run; skip one that finished
    local name=$1; shift
    local resume=()
    # a finished run's marker: resuming one only to find it done costs ~25 s of loading
    [[ -f $RUNS/$name/finished ]] && { echo "== $name finished"; return; }
    [[ -f $RUNS/$name/last.pt ]] && resume=(--resume)
    echo "== $name $(date +%H:%M:%S)"
    "$KDLIC" "$@" --run-dir "$RUNS/$name" --no-progress "${resume[@]}"
    touch "$RUNS/$name/finished"
}

# Students: a long run at lambda 0.025 (teacher-q5) per N and loss, then the other lambdas
# by fine-tuning its end with their own teachers, as the teachers' rate points were made:
# from scratch, 6000 steps left an N=16 student's validation RD loss falling 13 % over its
# last 2000 (docs/training.md). Equal within each twin pair (KD and no KD).
STUDENT_STEPS=${STUDENT_STEPS:-16000}
FINETUNE_STEPS=${FINETUNE_STEPS:-4000}
S=$RUNS/v3  # the students' runs

kd_for() {  # kd_for N: sets KD to N's KD preset and weights. N=16 and 32 take the paper's
    # heaviest KD weights (latent 0.4, output 0.4, rd 0.2: at N=16 they beat the preset's
    # 0.2 / 0.2 / 0.4 by 6 % in RD cost at 6000 steps), N=64 the preset's (they won there;
    # docs/training.md, "Student recipe")
    KD=(L1)
    if (( $1 < 64 )); then KD+=(--weight latent=0.4 --weight output=0.4 --weight rd=0.2); fi
}

student() {  # student NAME TEACHER N STEPS PRESET [MORE FLAGS]: one student run in $S
    # the learning rate decays (cosine) over the last third, as the teachers' does
    local name=$1 teacher=$2 n=$3 steps=$4 preset=$5; shift 5
    run "${S#"$RUNS"/}/$name" distill -c configs/student-cpu.yaml --teacher "$teacher" --N "$n" \
        --preset "$preset" --steps "$steps" --set "optim.decay_steps=$((steps / 3))" "$@"
}

finetune() {  # finetune NAME FROM TEACHER N PRESET [MORE FLAGS]: NAME from $S/FROM's best
    # (or the zoo's FROM, fp16, where that run is gone), to TEACHER's lambda; a 200-step
    # warm-up (a fresh Adam at full lr jolts trained weights)
    local name=$1 from=$2 teacher=$3 n=$4 preset=$5 init; shift 5
    init=$S/$from/best.pt; [[ -f $init ]] || init=$from
    student "$name" "$teacher" "$n" "$FINETUNE_STEPS" "$preset" --init "$init" \
        --set optim.warmup_steps=200 "$@"
}

RATES=("q1 0.0018" "q2 0.0035" "q3 0.0067" "q4 0.0130")  # CompressAI's q1-q4 lambdas

rates() {  # rates PHASE CONFIG [FLAGS]: $RATES's runs of that phase, one after another
    local phase=$1 config=$2 q lmbda; shift 2
    for rate in "${RATES[@]}"; do
        read -r q lmbda <<< "$rate"
        # phase 2 starts from the q5 run's end (the config's init); a later phase continues
        # the point's own run of the phase before, or the zoo's weights of that point
        # (fp16) where that run is gone (a fresh machine)
        local init=() before=$RUNS/teacher-$q-long-$((phase - 1))/best.pt
        [[ -f $before ]] || before=teacher-$q
        (( phase > 2 )) && init=(--init "$before")
        run "teacher-$q-long-$phase" train -c "$config" --lmbda "$lmbda" "${init[@]}" "$@"
    done
}

case ${1:-} in
teachers)  # issue 11's five teachers: the long run's two phases, then the four rates
    run teacher-q5-long train -c configs/teacher-q5-long.yaml
    run teacher-q5-long-2 train -c configs/teacher-q5-long-2.yaml
    rates 2 configs/teacher-rate-finetune.yaml
    rates 3 configs/teacher-rate-finetune-3.yaml
    ;;
rates)  # the four rate fine-tunes of phase 2's end, one after another on two threads
    rates 2 configs/teacher-rate-finetune.yaml
    ;;
rates3)  # phase 3 of the four rate points (configs/teacher-rate-finetune-3.yaml)
    rates 3 configs/teacher-rate-finetune-3.yaml
    ;;
rates4)  # phase 4 of q2 (the curve's weakest point against WebP): phase 3's recipe 6000
    # steps, a new seed, as an A/B of the quantisation at equal steps, seed and data, one
    # thread each side by side: noise (teacher-q2-long-4-noise) against mixed
    # (teacher-q2-long-4, which won by 5 % RD cost and is kept; docs/training.md)
    for quant in noise mixed; do
        name=teacher-q2-long-4; [[ $quant == noise ]] && name=$name-noise
        run "$name" train -c configs/teacher-rate-finetune-3.yaml --lmbda 0.0035 \
            --init teacher-q2 --steps 6000 --seed 4 --set optim.decay_steps=3000 \
            --set quantization=$quant --threads 1 &
    done
    wait
    ;;
rates5)  # phase 5 of q5, q3 (2000 steps) and q4, q1 (1000 steps: one session's time; the
    # mixed A/B's gain came in its first 500): mixed quantisation from the zoo's weights
    # of the point, two lanes of one thread side by side
    lane() { for rate in "$@"; do read -r q lmbda steps <<< "$rate"
        run "teacher-$q-long-5" train -c configs/teacher-rate-finetune-mixed.yaml \
            --lmbda "$lmbda" --init "teacher-$q" --steps "$steps" \
            --set "optim.decay_steps=$((steps / 2))"; done; }
    lane "q5 0.025 2000" "q4 0.0130 1000" &
    lane "q3 0.0067 2000" "q1 0.0018 1000" &
    wait
    ;;
rates6)  # phase 6 of q1, q3, q4 (q2 had 6000 mixed steps, these 1000-2000; q5 was flat):
    # 3000 more from each point's phase-5 end, a new seed, three one-thread runs on the
    # two cores (~0.87 s a step for one lane of two; three lanes share the same cores)
    # (the zoo's weights of the point are that end, in fp16, where its run is gone)
    for rate in "q1 0.0018" "q3 0.0067" "q4 0.0130"; do
        read -r q lmbda <<< "$rate"
        before=$RUNS/teacher-$q-long-5/best.pt; [[ -f $before ]] || before=teacher-$q
        run "teacher-$q-long-6" train -c configs/teacher-rate-finetune-mixed.yaml \
            --lmbda "$lmbda" --init "$before" --steps 3000 --seed 6 \
            --set optim.decay_steps=1500 &
    done
    wait
    ;;
students)  # zoo v2 (issue 16): every student from the final teachers, one after another
    # KD (L1) and no-KD twins at N=16, 32, 64: a long run from teacher-q5 (lambda 0.025),
    # then fine-tunes of its end to lambdas 0.0018 and 0.0067 with teacher-q1 and -q3
    for n in 16 32 64; do
        kd_for "$n"
        for loss in l1 none; do
            preset=("${KD[@]}"); [[ $loss == none ]] && preset=(none)
            student "student-n$n-$loss" teacher-q5 "$n" "$STUDENT_STEPS" "${preset[@]}"
            for q in q1 q3; do
                finetune "student-n$n-$loss-$q" "student-n$n-$loss" "teacher-$q" "$n" \
                    "${preset[@]}"
            done
        done
    done
    # the paper's other rate points: N=32 at lambdas 0.0018 and 0.0067 with teacher-q5 as
    # the teacher, against student-n32-l1-q1 and -q3 (their own lambda's teacher)
    for rate in "q1 0.0018" "q3 0.0067"; do
        read -r q lmbda <<< "$rate"
        finetune "student-n32-l1-$q-from-q5" student-n32-l1 teacher-q5 32 L1 \
            --weight latent=0.4 --weight output=0.4 --weight rd=0.2 --lmbda "$lmbda"
    done
    student student-n96-l1 teacher-q5 96 "$STUDENT_STEPS" L1     # the paper's size table
    student student-n112-l1 teacher-q5 112 "$STUDENT_STEPS" L1
    ;;
refit)  # the KD students of lambdas 0.0018 and 0.0067 again, after teacher-q1's and -q3's
    # phase 5 (their no-KD twins learn from no teacher and stay): the same fine-tunes of
    # the zoo's lambda-0.025 students, in their own folder (v4)
    S=$RUNS/v4
    for n in 16 32 64; do
        kd_for "$n"
        for q in q1 q3; do
            finetune "student-n$n-l1-$q" "student-n$n-l1" "teacher-$q" "$n" "${KD[@]}"
        done
    done
    ;;
variants)  # issue 16's loss variants at N=64, lambda 0.025, each against student-n64-none:
    # reported (`results`), not shipped (budget)
    for preset in L2 kld output-only; do
        student "student-n64-$preset" teacher-q5 64 "$STUDENT_STEPS" "$preset"
    done
    student student-n64-hybrid teacher-q5 64 "$STUDENT_STEPS" hybrid --teacher2 teacher-q1
    ;;
students2)  # the N=64 twins' next phase at their three lambdas (issue 16's 0.5 dB bar):
    # configs/student-phase2.yaml (the teachers' late winners: 256-px crops, mixed
    # quantisation, warm-up + EMA). `students2` (phase 2, folder v5) starts each from the
    # zoo's weights of its point (those of phase 1 and `refit`); `students2 3` (v6) and
    # later continue each point's run of the phase before (or the zoo's weights, fp16,
    # where that run is gone), with a new seed. KD and no-KD twin one after the other, so
    # that a stop leaves whole pairs; `export` takes the latest phase's run. Points after
    # the phase train only those (`students2 4 q3 q5`: the points the BD-PSNR gap is at)
    # THREADS=1 leaves a core free (the config's 2 threads otherwise)
    phase=${2:-2}
    points=("${@:3}"); (( ${#points[@]} )) || points=(q5 q1 q3)
    for q in "${points[@]}"; do
        for loss in l1 none; do
            name=student-n64-$loss; [[ $q != q5 ]] && name+=-$q
            preset=(L1); [[ $loss == none ]] && preset=(none)
            start=(--init "$name")
            if (( phase > 2 )); then
                before=$RUNS/v$((phase + 2))/$name/best.pt
                [[ -f $before ]] && start=(--init "$before")
                start+=(--seed "$phase")
            fi
            run "v$((phase + 3))/$name" distill -c configs/student-phase2.yaml \
                --teacher "teacher-$q" --N 64 --preset "${preset[@]}" "${start[@]}" \
                ${THREADS:+--threads "$THREADS"}
        done
    done
    ;;
decoders)  # issue 15: small synthesis transforms for the zoo's teacher-q5 (its own files).
    # The teacher is the zoo's file itself: a zoo decoder takes its encoder from it. (The
    # zoo's three ran before the students' lr decay; their checkpoints' configs say so.)
    for n in 16 32 64; do
        student "decoder-n$n-q5" teacher-q5 "$n" 6000 decoder --decoder-only
    done
    ;;
export)  # copy the finished runs into the package (fp16, Kodak figures in the metadata)
    shift
    for name in "$@"; do
        run_dir=$S/$name  # a student's: its latest phase's (refit v4, phases 2, 3... v5, v6...)
        for phase in v{4..20}; do
            [[ -f $RUNS/$phase/$name/best.pt ]] && run_dir=$RUNS/$phase/$name
        done
        if [[ $name == teacher-q? ]]; then  # a teacher's: its latest phase
            for phase in 2 3 4 5 6; do
                [[ -f $RUNS/$name-long-$phase/best.pt ]] && run_dir=$RUNS/$name-long-$phase
            done
        fi
        "$KDLIC" zoo export "$run_dir/best.pt" "$name" --images ../shared/data/kodak
    done
    ;;
results)  # docs/results.md: the zoo, and the loss-variant students it does not ship
    extra=()
    for preset in L2 kld output-only hybrid; do  # finished runs only: not a half-run's best
        ckpt=$S/student-n64-$preset/best.pt
        stored=docs/results/data/students-$preset.json  # their figures when the runs are gone
        if [[ -f $S/student-n64-$preset/finished ]]; then extra+=("$ckpt")
        elif [[ -f $stored ]]; then extra+=("$stored"); fi
    done
    .venv/bin/python benchmarks/zoo_results.py ${extra[@]:+--extra "${extra[@]}"}
    ;;
*)
    echo "usage: $0 teachers   (the five teachers, one after another)" >&2
    echo "       $0 rates   (the four rate fine-tunes of the long run's end)" >&2
    echo "       $0 rates3   (phase 3 of the four rate points)" >&2
    echo "       $0 rates4   (phase 4 of q2: noise against mixed quantisation)" >&2
    echo "       $0 rates5   (phase 5 of q1, q3, q4, q5: mixed quantisation)" >&2
    echo "       $0 rates6   (phase 6 of q1, q3, q4: 3000 more mixed steps)" >&2
    echo "       $0 students   (the zoo's students, from the final teachers)" >&2
    echo "       $0 students2 [PHASE [POINT...]]   (phase 2, 3... of the N=64 twins; default: q5 q1 q3)" >&2
    echo "       $0 refit   (the KD students of q1 and q3 again, from the new teachers)" >&2
    echo "       $0 variants   (the N=64 loss variants, reported, not shipped)" >&2
    echo "       $0 decoders   (decoder-only students of the zoo's teacher-q5)" >&2
    echo "       $0 export NAME...   (put finished runs into the zoo)" >&2
    echo "       $0 results   (docs/results.md: the zoo and the unshipped loss variants)" >&2
    exit 2
    ;;
esac
