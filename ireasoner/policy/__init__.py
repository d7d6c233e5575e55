"""The trainable policy: LoRA adapters on the frozen backbone, batched log-probs, SFT, export."""
