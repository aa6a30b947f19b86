"""Help texts of options that several commands share (one wording, kept in one place)."""

TARGET_RESIZE = (
    "How prompt targets are resized: auto (as the checkpoint: released Painter bicubic as the "
    "paper's eval scripts, SegGPT nearest, ours as trained), codec, official-train, bicubic or "
    "nearest."
)
SEG_TYPE = (
    "SegGPT: instance or semantic (default: as the checkpoint was trained on the task's kind; "
    "released SegGPT: instance)."
)
