#!/usr/bin/python3
"""Checks an ONNX model exported by pstrain with tools pstrain did not write.

  onnx_check.py subset IMAGES LABELS N OUT_IMAGES OUT_LABELS
      the first N samples of an IDX pair (gzipped or not), written gzipped
  onnx_check.py check MODEL TEST_IMAGES TEST_LABELS LOGITS
      onnx.checker.check_model (full check) on MODEL, then OpenCV's DNN module
      runs it on the test images (pixels / 255, as pstrain reads them);
      prints one JSON line: the largest difference between OpenCV's logits
      and LOGITS (pstrain eval --logits: float32 rows), both accuracies, and
      the agreement of the probabilities output with a softmax of the logits.
"""
import gzip
import json
import struct
import sys

import numpy as np


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape), data[:4]


def write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(magic)
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def subset(images, labels, n, out_images, out_labels):
    x, xm = read_idx(images)
    y, ym = read_idx(labels)
    write_idx(out_images, np.ascontiguousarray(x[:n]), xm)
    write_idx(out_labels, np.ascontiguousarray(y[:n]), ym)


def check(model_path, images, labels, logits_path):
    import cv2
    import onnx
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    x, _ = read_idx(images)
    y, _ = read_idx(labels)
    x = x.reshape(x.shape[0], -1).astype(np.float32) * np.float32(1.0 / 255)
    ours = np.fromfile(logits_path, dtype=np.float32).reshape(x.shape[0], -1)
    net = cv2.dnn.readNetFromONNX(model_path)
    names = net.getUnconnectedOutLayersNames()
    logits, probs = [], []
    for begin in range(0, x.shape[0], 500):
        net.setInput(x[begin:begin + 500])
        outs = dict(zip(names, net.forward(names)))
        logits.append(outs["logits"].reshape(-1, ours.shape[1]))
        probs.append(outs["probabilities"].reshape(-1, ours.shape[1]))
    logits = np.concatenate(logits)
    probs = np.concatenate(probs)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    print(json.dumps({
        "checker": "ok",
        "opencv": cv2.__version__,
        "onnx": onnx.__version__,
        "opset": model.opset_import[0].version,
        "samples": int(x.shape[0]),
        "max_abs_diff": float(np.abs(logits - ours).max()),
        "opencv_correct": int((logits.argmax(axis=1) == y).sum()),
        "pstrain_correct": int((ours.argmax(axis=1) == y).sum()),
        "same_predictions": int((logits.argmax(axis=1) == ours.argmax(axis=1)).sum()),
        "probabilities_max_diff": float(np.abs(probs - softmax).max()),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "subset":
        subset(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
