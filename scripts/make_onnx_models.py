"""ONNX BatchNormalization models for the onnxruntime-node benchmark (bench/), exported from
PyTorch (run with /usr/bin/python3): bn2d-train-c{C}.onnx (training_mode = 1: batch
statistics) and bn2d-eval-c{C}.onnx (running statistics) for C = 64 and 256, with dynamic
N, H and W. gamma = 1 and beta = 0 are in the files."""
import torch

MODES = (("train", torch.onnx.TrainingMode.TRAINING), ("eval", torch.onnx.TrainingMode.EVAL))
for channels in (64, 256):
    for mode, training in MODES:
        bn = torch.nn.BatchNorm2d(channels)
        bn.train(mode == "train")
        path = f"bench/models/bn2d-{mode}-c{channels}.onnx"
        torch.onnx.export(
            bn, (torch.randn(2, channels, 4, 4),), path, opset_version=15, training=training,
            do_constant_folding=False, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
        )
        print(path)
