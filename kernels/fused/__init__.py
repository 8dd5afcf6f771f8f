"""Fused FlagGems operators outside aten (those vLLM and vllm-plugin-FL call); helpers in _common.py."""
