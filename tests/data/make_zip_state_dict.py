# Makes tests/data/zip_state_dict.pt with real PyTorch (run once on a machine that has torch; the
# project itself never runs Python). The test reads it with our zip + pickle importer.
import collections
import sys

import torch

a = torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0
sd = collections.OrderedDict()
sd["a"] = a
sd["t"] = a.t()  # a non-contiguous view sharing a's storage
sd["d"] = torch.tensor([1.0, -2.0, 0.25], dtype=torch.float64)
sd["n"] = torch.tensor(42, dtype=torch.int64)
torch.save(sd, sys.argv[1] if len(sys.argv) > 1 else "zip_state_dict.pt")  # zip format (torch >= 1.6)
print(torch.__version__)
