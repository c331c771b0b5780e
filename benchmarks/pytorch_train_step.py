#!/usr/bin/python3
"""The PyTorch CPU side of the training-step comparison (benchmarks/train_side_by_side.py runs it):
RetinaFace (MobileNet-0.25 or ResNet-50) written as the public PyTorch implementation defines it, its
MultiBox loss (matching at IoU 0.35, 7:1 hard negatives, loc weight 2), SGD (momentum 0.9, weight
decay 5e-4), and the reference data pipeline (random square crop, photometric distortion, mirror,
resize with a random interpolation, mean subtraction) in a DataLoader with --workers processes.

Optional tooling: Debian's python3-torch, python3-torchvision and python3-opencv, run with
/usr/bin/python3. The project itself never needs Python.

Prints one line per timed step and then `images/s X` over the timed steps (after --warmup steps).
"""
import argparse
import os
import random
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.data as data
import torchvision.models


# ---- model -------------------------------------------------------------------------------------

def conv_bn(cin, cout, k, stride, leaky=None, groups=1):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def conv_dw(cin, cout, stride, leaky=0.1):
    return nn.Sequential(conv_bn(cin, cin, 3, stride, leaky, groups=cin), conv_bn(cin, cout, 1, 1, leaky))


class MobileNetV1(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(conv_bn(3, 8, 3, 2, 0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2),
                                    conv_dw(32, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x):
        a = self.stage1(x)
        b = self.stage2(a)
        return [a, b, self.stage3(b)]


class ResNet50Body(nn.Module):
    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet50()
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1)
        self.layer2, self.layer3, self.layer4 = r.layer2, r.layer3, r.layer4

    def forward(self, x):
        a = self.layer2(self.stem(x))
        b = self.layer3(a)
        return [a, b, self.layer4(b)]


class FPN(nn.Module):
    def __init__(self, ins, out):
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.lateral = nn.ModuleList([conv_bn(c, out, 1, 1, leaky) for c in ins])
        self.merge = nn.ModuleList([conv_bn(out, out, 3, 1, leaky) for _ in ins[1:]])

    def forward(self, xs):
        o = [lat(x) for lat, x in zip(self.lateral, xs)]
        for i in range(len(o) - 2, -1, -1):
            o[i] = self.merge[i](o[i] + F.interpolate(o[i + 1], size=o[i].shape[2:], mode="nearest"))
        return o


class SSH(nn.Module):
    def __init__(self, cin, out):
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.c3 = conv_bn(cin, out // 2, 3, 1)
        self.c5_1 = conv_bn(cin, out // 4, 3, 1, leaky)
        self.c5_2 = conv_bn(out // 4, out // 4, 3, 1)
        self.c7_2 = conv_bn(out // 4, out // 4, 3, 1, leaky)
        self.c7_3 = conv_bn(out // 4, out // 4, 3, 1)

    def forward(self, x):
        c5_1 = self.c5_1(x)
        c7_2 = self.c7_2(c5_1)
        return F.relu(torch.cat([self.c3(x), self.c5_2(c5_1), self.c7_3(c7_2)], 1))


class RetinaFace(nn.Module):
    def __init__(self, model):
        super().__init__()
        if model == "resnet50":
            self.body, ins, out = ResNet50Body(), [512, 1024, 2048], 256
        else:
            self.body, ins, out = MobileNetV1(), [64, 128, 256], 64
        self.fpn = FPN(ins, out)
        self.ssh = nn.ModuleList([SSH(out, out) for _ in ins])
        self.heads = nn.ModuleList([nn.ModuleList([nn.Conv2d(out, 2 * k, 1) for _ in ins]) for k in (4, 2, 10)])

    def forward(self, x):
        feats = [s(f) for s, f in zip(self.ssh, self.fpn(self.body(x)))]
        n = x.shape[0]
        return [torch.cat([h(f).permute(0, 2, 3, 1).reshape(n, -1, k) for h, f in zip(heads, feats)], 1)
                for heads, k in zip(self.heads, (4, 2, 10))]


def priors_for(size):
    rows = []
    for step, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        f = (size + step - 1) // step
        for i in range(f):
            for j in range(f):
                for s in sizes:
                    rows.append([(j + 0.5) * step / size, (i + 0.5) * step / size, s / size, s / size])
    return torch.tensor(rows)


# ---- loss: matching, encoding, hard negatives ----------------------------------------------------

def point_form(p):
    return torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1)


def iou(a, b):
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def match(truths, labels, landms, priors, var, threshold=0.35):
    ov = iou(truths, point_form(priors))
    best_prior_ov, best_prior = ov.max(1)
    valid = best_prior_ov >= 0.2
    P = priors.shape[0]
    if not valid.any():
        return torch.zeros(P, 4), torch.zeros(P, dtype=torch.long), torch.zeros(P, 10)
    best_truth_ov, best_truth = ov.max(0)
    best_truth_ov.index_fill_(0, best_prior[valid], 2)
    for j in range(best_prior.shape[0]):
        best_truth[best_prior[j]] = j
    m = truths[best_truth]
    conf = labels[best_truth].long()
    conf[best_truth_ov < threshold] = 0
    g_c = ((m[:, :2] + m[:, 2:]) / 2 - priors[:, :2]) / (var[0] * priors[:, 2:])
    g_wh = torch.log((m[:, 2:] - m[:, :2]) / priors[:, 2:]) / var[1]
    lm = landms[best_truth].view(P, 5, 2)
    lm = ((lm - priors[:, None, :2]) / (var[0] * priors[:, None, 2:])).view(P, 10)
    return torch.cat([g_c, g_wh], 1), conf, lm


def multibox_loss(out, priors, targets, var=(0.1, 0.2)):
    loc_p, conf_p, landm_p = out
    B, P = loc_p.shape[:2]
    loc_t, conf_t, landm_t = torch.zeros(B, P, 4), torch.zeros(B, P, dtype=torch.long), torch.zeros(B, P, 10)
    for b, t in enumerate(targets):
        loc_t[b], conf_t[b], landm_t[b] = match(t[:, :4], t[:, 14], t[:, 4:14], priors, var)
    pos1 = conf_t > 0
    n1 = max(pos1.sum().item(), 1)
    loss_landm = F.smooth_l1_loss(landm_p[pos1], landm_t[pos1], reduction="sum")
    pos = conf_t != 0
    conf_t[pos] = 1
    loss_l = F.smooth_l1_loss(loc_p[pos], loc_t[pos], reduction="sum")
    flat = conf_p.reshape(-1, 2)
    with torch.no_grad():
        rank_loss = (torch.logsumexp(flat, 1) - flat.gather(1, conf_t.view(-1, 1)).squeeze(1)).view(B, P)
        rank_loss[pos] = 0
        order = rank_loss.sort(1, descending=True)[1]
        rank = order.sort(1)[1]
        num_pos = pos.long().sum(1, keepdim=True)
        neg = rank < torch.clamp(7 * num_pos, max=P - 1)
    sel = pos | neg
    loss_c = F.cross_entropy(conf_p[sel], conf_t[sel], reduction="sum")
    n = max(num_pos.sum().item(), 1)
    return loss_l / n, loss_c / n, loss_landm / n1


# ---- data: the reference augmentation ----------------------------------------------------------

def crop(img, boxes, labels, landm, size_short):
    h, w = img.shape[:2]
    for _ in range(250):
        s = int(random.choice((0.3, 0.45, 0.6, 0.8, 1.0)) * size_short)
        left, top = random.randrange(w - s + 1), random.randrange(h - s + 1)
        roi = np.array((left, top, left + s, top + s))
        c = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = np.logical_and(roi[:2] < c, c < roi[2:]).all(1)
        if not keep.any():
            continue
        b, lm = boxes[keep].copy(), landm[keep].reshape(-1, 5, 2).copy()
        b[:, :2] = np.maximum(b[:, :2], roi[:2]) - roi[:2]
        b[:, 2:] = np.minimum(b[:, 2:], roi[2:]) - roi[:2]
        lm = (lm - roi[:2]).reshape(-1, 10)
        ok = np.minimum(b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1) / s * 640 > 0
        if not ok.any():
            continue
        return img[top:top + s, left:left + s], b[ok], labels[keep][ok], lm[ok], False
    return img, boxes, labels, landm, True


def distort(img):
    img = img.astype(np.float32)
    if random.randrange(2):
        img += random.uniform(-32, 32)
    if random.randrange(2):
        img *= random.uniform(0.5, 1.5)
    hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if random.randrange(2):
        hsv[:, :, 1] *= random.uniform(0.5, 1.5)
    if random.randrange(2):
        hsv[:, :, 0] = (hsv[:, :, 0] + random.randint(-18, 18)) % 180
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)


class WiderFace(data.Dataset):
    def __init__(self, label_file, size):
        self.size, self.items = size, []
        root = os.path.join(os.path.dirname(label_file), "images")
        for line in open(label_file):
            line = line.strip()
            if line.startswith("#"):
                self.items.append((os.path.join(root, line[2:]), []))
            elif line:
                self.items[-1][1].append([float(v) for v in line.split()])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, rows = self.items[i]
        img = cv2.imread(path)
        t = np.zeros((len(rows), 15), np.float32)
        for k, r in enumerate(rows):
            t[k, :4] = (r[0], r[1], r[0] + r[2], r[1] + r[3])
            t[k, 4:14] = [r[4 + 3 * (q // 2) + q % 2] for q in range(10)]
            t[k, 14] = -1 if r[4] < 0 else 1
        img, b, lab, lm, pad = crop(img, t[:, :4], t[:, 14], t[:, 4:14], min(img.shape[:2]))
        img = distort(img)
        if pad:
            h, w = img.shape[:2]
            sq = np.empty((max(h, w), max(h, w), 3), img.dtype)
            sq[:] = (104, 117, 123)
            sq[:h, :w] = img
            img = sq
        h, w = img.shape[:2]
        if random.randrange(2):
            img = img[:, ::-1]
            b = b.copy()
            b[:, 0::2] = w - b[:, 2::-2]
            lm = lm.reshape(-1, 5, 2).copy()
            lm[:, :, 0] = w - lm[:, :, 0]
            lm = lm[:, [1, 0, 2, 4, 3]].reshape(-1, 10)
        interp = random.choice((cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4))
        img = cv2.resize(np.ascontiguousarray(img), (self.size, self.size), interpolation=interp).astype(np.float32)
        img -= (104, 117, 123)
        scale = np.array([w, h] * 2, np.float32)
        tgt = np.concatenate([b / scale, lm / np.tile(scale[:2], 5), lab[:, None]], 1).astype(np.float32)
        return torch.from_numpy(img.transpose(2, 0, 1).copy()), torch.from_numpy(tgt)


def collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="label.txt (RetinaFace format)")
    ap.add_argument("--model", default="mobilenet0.25", choices=("mobilenet0.25", "resnet50"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=0, help="default 640 (MobileNet) or 840 (ResNet-50)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    random.seed(7)
    size = a.size or (840 if a.model == "resnet50" else 640)
    net = RetinaFace(a.model).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    priors = priors_for(size)
    loader = data.DataLoader(WiderFace(a.data, size), a.batch, shuffle=True, num_workers=a.workers,
                             collate_fn=collate, drop_last=True, persistent_workers=a.workers > 0)
    it, t0, done = iter(loader), None, 0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t0 = time.perf_counter()
        ts = time.perf_counter()
        images, targets = next(it)
        out = net(images)
        ll, lc, lm = multibox_loss(out, priors, targets)
        loss = 2 * ll + lc + lm
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= a.warmup:
            done += images.shape[0]
        print(f"step {step + 1} loss {loss.item():.4f} {time.perf_counter() - ts:.3f} s", flush=True)
    print(f"images/s {done / (time.perf_counter() - t0):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
