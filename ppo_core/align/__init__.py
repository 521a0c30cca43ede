"""The alignment wing: InstructGPT's pipeline (Ouyang et al. 2022, §3.5) on top of the RL core.

Supervised stages (a base causal LM pretrained on plain text, supervised fine-tuning on
demonstrations, a reward model trained on rankings of sampled completions) and the RL stage, which
trains the policy through the core's trainer on the text bandit. Run them with
``python -m ppo_core.align stage=...``; ``plugin`` registers ``env=text_bandit``, ``objective=rlhf``
and ``agent=lm`` with the training app.

Modules: `tokenizer` (byte-level BPE), `models` (GPT-2 presets, loading local HF checkpoints), `data`
(packing, prompt/completion encoding), `generation` (batched sampling), `pretrain`, `sft`,
`ranking_loss`, `reward` (comparison data and RM training), `world` (the embedded language world),
`gold` (gold-labeler evaluation), `stages` (stage registry), `config` (typed stage settings),
`rl_config` (text-env and LM-agent schemas), `artifacts` (what an RL run reads from disk),
`rl_build` (text env, LM policy and loss-term builders), `objective_terms` (KL in the loss, PPO-ptx).

Nothing is imported here, so that registering the plugin stays cheap; import the modules.
"""
