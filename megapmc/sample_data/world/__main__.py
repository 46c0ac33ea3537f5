"""``python -m megapmc.sample_data.world``: write a world's files (see megapmc.sample_data.world.write)."""
import argparse

from megapmc.sample_data.world.write import write_world


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--num-diseases", type=int, default=72, help="as many drugs and findings; a multiple of 3")
    args = p.parse_args(argv)
    try:
        summary = write_world(args.output_dir, seed=args.seed, num_diseases=args.num_diseases)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for key, value in summary.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
