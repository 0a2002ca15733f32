"""`python -m aigc_tf` is the same as the `aigc-tf` console script."""

from aigc_tf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
