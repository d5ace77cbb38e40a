"""distill: a smaller student (fewer transformer layers, taken from the fine-tuned teacher) trained on the teacher's
outputs and the true targets with the task's distillation loss; prune then evaluates and times it like a pruning level,
and it may be exported under the same rule."""

from __future__ import annotations

from tunepipe.io import read_rows, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import get_task


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, save_model
    from tunepipe.errors import ParamsError
    from tunepipe.models.inference import pick_device
    from tunepipe.models.structure import structure
    from tunepipe.optimize.distillation import DistillSettings, distill_steps, make_student
    from tunepipe.optimize.pruning import PruningLevel, count_params

    runtime.torch_threads(ctx.threads)
    settings = DistillSettings.from_params(ctx.params["distill"])
    teacher, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], get_modality(meta["modality"])
    task, stats = get_task(meta["task"]), meta["target_stats"]
    if why := modality.no_student(model_cfg):
        raise ParamsError(f"distill: {why}; set distill.enabled: false.")
    rows = read_rows(ctx.inputs["train"])
    dataset = modality.encode(rows, task.encode(rows, names, str(ctx.inputs["train"])), model_cfg, modality.load_processor(model_cfg))
    teacher_layers = len(teacher.layers()[1])
    student, kept = make_student(teacher, settings.layer_fraction)
    ctx.log.info("student: %d of the teacher's %d layers (%s), %d parameters against %d; %d steps on %d rows", len(kept), teacher_layers,
                 ", ".join(map(str, kept)), count_params(student), count_params(teacher), settings.steps, len(dataset))
    trained = distill_steps(student, teacher, dataset, steps=settings.steps, lr=settings.lr, batch_size=settings.batch_size,
                            temperature=settings.temperature, alpha=settings.alpha, seed=ctx.params["seed"], task=task, stats=stats,
                            device=pick_device(), log=ctx.log)
    level = PruningLevel.at("distilled", round(1 - len(kept) / teacher_layers, 4))
    save_model(ctx.outputs["student"], student.cpu(), model_cfg=model_cfg, label_names=names, modality=modality.name,
               pruning_level=level.as_dict(), structure=structure(student), task=task.name, target_stats=stats)
    write_json(ctx.outputs["summary"], {
        "level": level.as_dict(), "teacher_layers": teacher_layers, "student_layers": len(kept), "kept_layers": kept,
        "teacher_params": count_params(teacher), "student_params": count_params(student), "temperature": settings.temperature,
        "alpha": settings.alpha, "lr": settings.lr, "batch_size": settings.batch_size, "train_rows": len(dataset), **trained,
    })


STAGE = Stage(
    name="distill",
    summary="Distil the fine-tuned teacher into a student with fewer layers (the teacher's softened outputs plus the true targets).",
    inputs={"best": "Lightning checkpoint from train (the teacher)", "train": "JSONL training rows (augmented)"},
    outputs={
        "student": "the student (state dict + shapes + config, task, target_stats, like prune's model file), evaluated and timed by prune",
        "summary": "JSON: the level, teacher and student layers and parameters, the loss settings, steps, final loss, seconds",
    },
    run=run,
    params_help="distill.layer_fraction, distill.steps, distill.lr, distill.batch_size, distill.temperature, distill.alpha, seed",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
