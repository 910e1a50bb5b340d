"""PyTorch mirrors of the qeval zoo (../shared/ZOO.md), with the same
state_dict names as the IR builders in models/zoo.cc, so weights move between
them by name. Used to export TorchScript/ONNX test models and by the peer
benchmarks. Change a model here only together with models/zoo.cc.
"""
import torch
import torch.nn as nn


def conv_bn(cin, cout, k, s, p, groups=1):
    return [nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, s, 0)) if (s != 1 or cin != cout) else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet8(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16, 3, 1, 1), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, s, t):
        super().__init__()
        h = cin * t
        self.expand = nn.Sequential(*conv_bn(cin, h, 1, 1, 0), nn.ReLU6())
        self.dw = nn.Sequential(*conv_bn(h, h, 3, s, 1, groups=h), nn.ReLU6())
        self.project = nn.Sequential(*conv_bn(h, cout, 1, 1, 0))
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.dw(self.expand(x)))
        return y + x if self.residual else y


class MobileNetV2Tiny(nn.Module):
    CFG = [(16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4), (64, 2, 4), (64, 1, 4)]

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16, 3, 1, 1), nn.ReLU6())
        blocks, cin = [], 16
        for cout, s, t in self.CFG:
            blocks.append(InvertedResidual(cin, cout, s, t))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*conv_bn(64, 128, 1, 1, 0), nn.ReLU6())
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, 1, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


MODELS = {"resnet8": (ResNet8, 32), "mobilenetv2_tiny": (MobileNetV2Tiny, 32), "lenet5": (LeNet5, 28)}


def build(name):
    cls, size = MODELS[name]
    return cls(), size


if __name__ == "__main__":
    for n in MODELS:
        m, _ = build(n)
        print(n, sum(p.numel() for p in m.parameters()))
