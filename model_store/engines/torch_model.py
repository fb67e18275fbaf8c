"""The transformer reward model as a torch module: encoder -> masked mean pool -> scalar.

Training builds it around a pretrained backbone; the torch engine rebuilds it from a stored
version's `torch/` folder. It lives here (not in `training`) so the engine can load a model
without importing the training code. Importing this module imports torch.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

STATE_FILE = "reward_model.safetensors"
HEAD_CONFIG_FILE = "reward_head.json"


POOLINGS = ("response", "mean")


class RewardModel(nn.Module):
    """Scores a tokenized (prompt, response) pair with one scalar.

    Pooling "response" averages the encoder states of the response segment only
    (token type 1). Chosen and rejected share their whole prompt, so averaging over all
    tokens would dilute the very difference the reward has to capture. Tokenizers that
    mark no second segment fall back to the mean over all tokens.
    """

    def __init__(self, backbone: nn.Module, hidden_size: int, pooling: str = "response") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(hidden_size, 1)
        # Some encoders (DistilBERT, ...) take no token types; pass them only where accepted.
        self.uses_token_types = "token_type_ids" in inspect.signature(backbone.forward).parameters

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        mask = attention_mask
        if self.pooling == "response" and token_type_ids is not None:
            response = attention_mask * (token_type_ids > 0).to(attention_mask.dtype)
            has_response = response.sum(dim=1, keepdim=True) > 0
            mask = torch.where(has_response, response, attention_mask)
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)

    def save(self, directory: Path) -> None:
        """Write what the torch engine needs: backbone config + all weights."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / STATE_FILE))
        (directory / HEAD_CONFIG_FILE).write_text(
            json.dumps({"pooling": self.pooling, "hidden_size": self.head.in_features}) + "\n"
        )

    @classmethod
    def load(cls, directory: Path) -> "RewardModel":
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        backbone = AutoModel.from_config(config)
        head = json.loads((directory / HEAD_CONFIG_FILE).read_text())
        model = cls(backbone, hidden_size=int(head["hidden_size"]), pooling=head.get("pooling", "mean"))
        model.load_state_dict(load_file(str(directory / STATE_FILE)))
        model.eval()
        return model
