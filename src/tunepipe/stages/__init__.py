"""One module per Snakemake rule. Each defines `STAGE` (its inputs, outputs and `run`) and a thin CLI:

    python -m tunepipe.stages.<name> --params JSON --threads N --in KEY=PATH ... --out KEY=PATH ...

The library (data/, models/, optimize/, report/) never imports a stage.
"""
