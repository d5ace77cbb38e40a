"""Attacks on tiny hand-made models: they must succeed where a small push flips the prediction, and stay in their budget."""

from __future__ import annotations

import torch
from torch import nn

from tunepipe.robustness.adversarial import EmbeddingSpace, PixelSpace, search
from tunepipe.robustness.attacks import GradientAttack, GreedyCharAttack


class LinearPixels(nn.Module):
    """Logits (s, -s) with s = mean pixel in [0, 1] minus 0.5: class 0 for bright images."""

    input_names = ("pixels",)

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 2)

    def forward(self, pixels):
        s = (pixels.float() / 255.0).mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([s, -s], dim=-1) * 50


class Pixels:
    def __init__(self, pixels):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return self.pixels[i], -1

    def lengths(self):
        return [1] * len(self.pixels)

    def collate(self, items):
        return {"pixels": torch.stack([p for p, _ in items])}


def test_fgsm_and_pgd_on_pixels_flip_a_near_boundary_image_and_stay_in_the_ball():
    model = LinearPixels()
    # mean 0.51: class 0 by a margin of 0.01; an L-inf push of 0.02 darkens every pixel by up to 0.02
    near = torch.full((1, 3, 8, 8), round(0.51 * 255), dtype=torch.uint8)
    far = torch.full((1, 3, 8, 8), 230, dtype=torch.uint8)  # mean 0.9: no push of 0.02 flips it
    dataset = Pixels(torch.cat([near, far]))
    targets = torch.tensor([0, 0])
    for method in ("fgsm", "pgd"):
        outcome = GradientAttack(method, PixelSpace(), epsilon=0.02, steps=4).run(model, [{}, {}], dataset, targets, targets, batch_size=2, seed=0)
        assert outcome.predictions.tolist() == [1, 0], method
        moved = outcome.inputs[0].float() - near[0].float()
        assert moved.abs().max() <= 0.02 * 255 + 0.5 and moved.mean() < -4  # within epsilon (rounded to uint8), darker
    delta = search(PixelSpace(), model, {"pixels": far}, torch.tensor([0]), method="pgd", epsilon=0.02, steps=3)
    assert float(delta.abs().max()) <= 0.02 + 1e-6 and float(((far.float() / 255) + delta).min()) >= 0.0


class Table(nn.Module):
    def __init__(self, table: nn.Embedding) -> None:
        super().__init__()
        self.table = table

    def get_input_embeddings(self):
        return self.table


class BagOfEmbeddings(nn.Module):
    """Mean of the token embeddings (the real mask-aware pooling of TextClassifier), linear head."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = Table(nn.Embedding(10, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder.get_input_embeddings()(input_ids)
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1))


def test_the_embedding_attack_flips_with_a_large_enough_budget_and_never_moves_padding():
    model = BagOfEmbeddings()
    inputs = {"input_ids": torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}
    with torch.no_grad():
        labels = model(**inputs).argmax(-1)
    space = EmbeddingSpace()
    for method, epsilon in (("fgsm", 5.0), ("pgd", 5.0)):
        delta = search(space, model, inputs, labels, method=method, epsilon=epsilon, steps=5)
        with torch.no_grad():
            assert (space.logits(model, inputs, delta).argmax(-1) != labels).all(), method
    delta = search(space, model, inputs, labels, method="pgd", epsilon=0.1, steps=5)
    norms = model.encoder.table(inputs["input_ids"]).norm(dim=-1)
    assert (delta.norm(dim=-1) <= 0.1 * norms * inputs["attention_mask"] + 1e-5).all()  # per token, relative; padding: 0
    assert float(delta[0, 3].abs().sum()) == 0.0 and float(delta[1, 2:].abs().sum()) == 0.0
    # the forward hook is gone afterwards: the model is unchanged
    with torch.no_grad():
        assert torch.equal(model(**inputs).argmax(-1), labels)


class Features:
    def __init__(self, texts):
        self.features = torch.tensor([[1.0 if "good" in t else 0.0] for t in texts])

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i], -1

    def lengths(self):
        return [1] * len(self.features)

    def collate(self, items):
        return {"features": torch.stack([f for f, _ in items])}


class SaysGood(nn.Module):
    """Class 0 ("positive") exactly when the text contains the word "good"."""

    input_names = ("features",)

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[5.0], [0.0]]))
            self.head.bias.copy_(torch.tensor([-2.5, 0.0]))

    def forward(self, features):
        return self.head(features)


def test_the_greedy_character_attack_breaks_the_one_word_that_matters_within_its_budget():
    rows = [{"id": "a", "text": "a good film"}, {"id": "b", "text": "goodness me"}, {"id": "c", "text": "bad film"}]
    targets = torch.tensor([0, 0, 0])
    clean = torch.tensor([0, 0, 1])  # row c is already wrong: not attacked
    attack = GreedyCharAttack(Features, {"char_max_edits": 2, "char_candidates": 30})
    outcome = attack.run(SaysGood(), rows, None, targets, clean, batch_size=8, seed=0)
    assert outcome.predictions.tolist() == [1, 1, 1]
    assert all("good" not in text for text in outcome.inputs[:2]) and outcome.inputs[2] == "bad film"
    assert outcome.queries <= 2 * 30  # one round each: both flipped at the first edit
    assert outcome.inputs == attack.run(SaysGood(), rows, None, targets, clean, batch_size=8, seed=0).inputs  # seeded: the same edits
    none = GreedyCharAttack(Features, {"char_max_edits": 0, "char_candidates": 30}).run(SaysGood(), rows, None, targets, clean, batch_size=8, seed=0)
    assert none.predictions.tolist() == clean.tolist() and none.queries == 0
