"""Serving a bundle (results/export/bundle/) without the training stack.

Only ONNX Runtime, numpy, `tokenizers` (texts) and Pillow (images) are used, plus FastAPI/uvicorn and
prometheus-client for the HTTP server: `pip install 'tunepipe[serve]'` installs exactly that. Nothing here
imports torch, Lightning or transformers (tests/serving/test_light.py checks it).

- `runtime`: load a bundle, turn raw inputs into the model's feeds, predict probabilities;
- `batch`: score a CSV/JSONL/Parquet file or an image folder (`tunepipe predict`);
- `server`: the HTTP server (`tunepipe serve`): /v1/predict, Open Inference Protocol v2, /metrics, A/B.
"""
