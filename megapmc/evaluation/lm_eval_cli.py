"""``lm_eval`` with the ``megapmc`` model registered: the same flags (``--model megapmc --model_args
load=CKPT_DIR ...``). Installed as ``megapmc-lm-eval``; under torchrun use ``-m megapmc.evaluation.lm_eval_cli``."""
import megapmc.evaluation.lm_eval_model  # noqa: F401  registers "megapmc" with lm-eval


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
