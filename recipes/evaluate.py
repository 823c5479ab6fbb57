"""Evaluate a saved adapter against its own base model (zero-shot) on unseen tasks.

    python recipes/evaluate.py --adapter_path outputs/virtualhome-food-preparation
    python recipes/evaluate.py --adapter_path outputs/run --tasks Household-HeatCheese-v0 --episodes 20
    python recipes/evaluate.py --adapter_path outputs/run --play greedy_no_repeat

The same as ``trl-embodied evaluate`` (see ``trl_embodied/scripts/evaluate.py`` for every option).
"""

from trl_embodied.scripts.evaluate import main

if __name__ == "__main__":
    main()
