"""Secure inference for the verification pipeline's inference check (checks/inference.py).

plan.py: the fixed-point plan (scales, layers, parameter layout) and its plaintext twin (numpy);
secure.py: the same plan inside MPyC (imported only by the MPC rule: MPyC parses sys.argv).
"""

from .plan import Plan, base_correct, forward_int, make_plan, plain_pass, quantize_images, quantize_weights

__all__ = ["Plan", "base_correct", "forward_int", "make_plan", "plain_pass", "quantize_images", "quantize_weights"]
