"""Average-case robustness: flip rates under clinically plausible variation, and the published benchmark metrics."""  # noqa: E501
