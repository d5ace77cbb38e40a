"""Images: Fashion-MNIST, a folder per label or a table of paths; EfficientNet-Lite0; pixels as the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunepipe.errors import ParamsError


class ImageModality:
    name = "image"
    input_field = "path"
    task = "image classification"
    baseline_features = "pixels"
    # On x86 CPUs without VNNI, dynamic INT8 made a CNN several times slower; static QDQ (calibrated) keeps its speed.
    default_quantization = "static"
    def no_student(self, model_cfg):
        """EfficientNet's blocks change width from stage to stage: dropping some breaks the network, so no student (yet)."""
        return f"{self.name} models have no student (distillation shortens a text encoder's layers)"

    def read(self, data_cfg: dict[str, Any], image_dir: Path, task=None):
        from tunepipe.data.readers import read_fashion_mnist, read_image_folder, read_image_table, resolve_source
        from tunepipe.tasks import DEFAULT, get_task

        task = task or get_task(DEFAULT)

        source = resolve_source(data_cfg)
        if source.kind == "fashion_mnist":
            return read_fashion_mnist(source, image_dir)
        if source.kind == "folder":
            return read_image_folder(source)
        if source.kind == "file":
            return read_image_table(source, lambda table: task.read_targets(table, data_cfg, str(source.path)))
        raise ParamsError(f"data.source {source.kind!r} holds texts; use fashion_mnist, folder or file with data.modality image, "
                          "or set data.modality: text.")

    def clean(self, frame, *, labels, clean_cfg, source, task=None):
        from tunepipe.data.cleaning import MAX_EXAMPLES, clean_images
        from tunepipe.tasks import DEFAULT, get_task

        return clean_images(frame, labels=labels, task=task or get_task(DEFAULT), min_size=clean_cfg["min_image_size"], drop_duplicates=clean_cfg["drop_duplicates"],
                            drop_conflicting_labels=clean_cfg["drop_conflicting_labels"], max_examples=MAX_EXAMPLES, source=source)

    def augment(self, rows, *, augment_cfg, seed, out_dir):
        from tunepipe.data.augment import augment_images

        return augment_images(rows, multiplier=augment_cfg["multiplier"], cfg=augment_cfg["image"], seed=seed, out_dir=out_dir)

    def load_processor(self, model_cfg):
        """Nothing: images are decoded and resized by `encode` itself."""
        return None

    def resolve_model_cfg(self, model_cfg, rows, processor):
        """Nothing is data-aware for images yet: `model.image_size` is the user's (or the preset's) choice."""
        return model_cfg, {}

    def encode(self, rows, labels, model_cfg, processor):
        from tunepipe.data.datamodule import ImageTensors

        return ImageTensors([row["path"] for row in rows], labels, model_cfg["image_size"])

    def build_classifier(self, model_cfg, num_labels, pretrained_weights=True):
        from tunepipe.models.image_classifier import ImageClassifier, load_backbone

        return ImageClassifier(load_backbone(model_cfg["pretrained"], pretrained_weights), num_labels, model_cfg["dropout"])

    def baseline_outputs(self, train_rows, train_targets, test_rows, *, baseline_cfg, seed, task, names):
        from tunepipe.models.baseline import fit_pixels, pixel_features

        features = pixel_features([row["path"] for row in train_rows])
        model = fit_pixels(features, train_targets, task.baseline_estimator(baseline_cfg, seed, task.output_size(names), features.shape[1]))
        return task.baseline_outputs(model, pixel_features([row["path"] for row in test_rows]), names, {})

    def preprocessing(self, model_cfg):
        size = model_cfg.get("image_size")
        return {
            "modality": "image",
            "steps": [f"decode, convert to RGB, resize to {size}x{size}", "uint8 array in CHW order (the model scales pixels to [-1, 1] itself)"],
            "image_size": size,
        }

    def input_limit(self, model_cfg):
        return "Images are resized to a small square; fine detail is lost."

    def auto_slices(self, rows):
        """Quartiles of the brightness (mean grey level, 0-255)."""
        from tunepipe.trust.slices import brightness, quartile_labels

        return {"brightness": quartile_labels([brightness(row["path"]) for row in rows], "grey level")}

    def explain(self, model, rows, targets, model_cfg, processor, *, steps, out_dir, names):
        """Pixel attributions (Integrated Gradients from a black image), drawn over each image as the PNG `out_dir / names[i]`."""
        from tunepipe.models.inference import pick_device
        from tunepipe.trust.explain import image_attributions, overlay_png

        dataset, device, results = self.encode(rows, None, model_cfg, processor), pick_device(), []
        for index, (name, target) in enumerate(zip(names, targets)):
            pixels = dataset[index][0]
            result = image_attributions(model, pixels, target, steps=steps, device=device)
            overlay_png(pixels.numpy(), result.pop("heat"), out_dir / name)
            results.append({**result, "heatmap": name})
        return results

    def show_attribution(self, item, base_dir):
        """The heat map PNG beside the image, inline."""
        from markupsafe import Markup

        from tunepipe.trust.explain import inline_png

        heat = inline_png(base_dir / item["heatmap"] if base_dir and item.get("heatmap") else None)
        return heat + Markup(" ") + Markup(self.show_example(item["input"])) if item.get("input") else heat

    def show_example(self, value: Any, size: int = 96):
        """An inline PNG thumbnail (the report stays one self-contained file); an unreadable image shows its path."""
        import base64
        import io

        from markupsafe import Markup, escape

        text = str(value)
        try:
            from PIL import Image

            with Image.open(text) as image:
                image = image.convert("RGB")
                image.thumbnail((size, size))
                scale = max(1, size // max(image.size))
                if scale > 1:  # small images (28 px) are enlarged without blurring
                    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
        except Exception:  # an unreadable image is an example of exactly that: show its path
            return Markup(f'<code>{escape(text)}</code> <span class="muted">(not readable)</span>')
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        name = escape(text.rsplit("/", 1)[-1])
        return Markup(f'<img class="thumb" src="data:image/png;base64,{data}" alt="{escape(text)}" title="{escape(text)}"><br><code>{name}</code>')

    def perturbations(self, severities, model_cfg, processor):
        """Gaussian noise, blur, brightness, contrast, JPEG re-encoding and rotation of the resized pixels."""
        from tunepipe.robustness.image_perturbations import image_perturbations

        return image_perturbations(severities)

    def attack_space(self):
        from tunepipe.robustness.adversarial import PixelSpace

        return PixelSpace()

    def attacks(self, attack_cfg, model_cfg, processor):
        """FGSM and PGD on the pixels (L-inf in [0, 1])."""
        from tunepipe.robustness.attacks import gradient_attacks

        return gradient_attacks(self.attack_space(), attack_cfg)


MODALITY = ImageModality()
