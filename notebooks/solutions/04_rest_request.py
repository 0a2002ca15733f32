"""Notebook 4, exercise 1: the JSON body of a TF Serving REST predict request, in the row ("instances") format."""

import json

import numpy as np


def rest_request(inputs, signature_name):
    """{"signature_name": ..., "instances": [{name: row i of that input, ...}, ...]} as JSON text."""
    arrays = {name: np.asarray(value) for name, value in inputs.items()}
    sizes = {name: len(array) for name, array in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the row format needs one batch size for every input, got {sizes}")
    (size,) = set(sizes.values())
    instances = [{name: array[i].tolist() for name, array in arrays.items()} for i in range(size)]
    return json.dumps({"signature_name": signature_name, "instances": instances})
