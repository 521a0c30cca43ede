"""A reward function as users write them (TRL's ``reward_funcs`` signature), for the throughput benchmark."""


def format_reward(prompts, completions, **columns):
    """1 for an answer of one to forty words that ends a sentence, 0 otherwise."""
    return [float(0 < len(c.split()) <= 40 and c.rstrip().endswith((".", "!", "?"))) for c in completions]
