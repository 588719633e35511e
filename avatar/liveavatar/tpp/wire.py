"""Messages between TPP processes: one fixed-size byte buffer per hop, and the process groups that carry them.

Every hop sends exactly one buffer: an int64 header (kind, sequence number, epoch, block index) followed by
the raw bytes of a fixed list of tensors (the block latent and its audio tokens). Raw bytes make the
transfer bit-exact for any dtype, and a fixed size lets the receiver post its buffer before the data
exists. Process groups are explicit objects (no torch.distributed default group, no global state): one for
the latents (point to point) and one for collectives (the start-up broadcast and the Adaptive Attention Sink
broadcast), so an outstanding asynchronous broadcast never interleaves with the point-to-point traffic.
Gloo binds to 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

HEADER_FIELDS = 8
KIND_BLOCK = 1


class BlockHeader(NamedTuple):
    """The int64 fields in front of a block message: what it is, its order, its epoch, the stream's block index."""

    kind: int
    seq: int
    epoch: int
    block: int

_ALIGN = 8

# Idle waits are legitimate (a consumer that stops pulling, an open reply under the "wait" policy), so the
# process groups never time out on their own; hung or dead peers are caught by the pool's heartbeat and
# process watchdog instead.
NO_TIMEOUT = datetime.timedelta(days=30)


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one tensor in a message."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        n = 1
        for s in self.shape:
            n *= s
        return n * torch.empty(0, dtype=self.dtype).element_size()


def _padded(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


class MessageLayout:
    """A header plus tensors of fixed shapes and dtypes, packed into one uint8 buffer."""

    def __init__(self, specs: Sequence[TensorSpec]) -> None:
        self.specs = tuple(specs)
        self.offsets: list[int] = []
        pos = _padded(HEADER_FIELDS * 8)
        for spec in self.specs:
            self.offsets.append(pos)
            pos = _padded(pos + spec.nbytes)
        self.nbytes = pos

    def empty(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """A receive buffer."""
        return torch.empty(self.nbytes, dtype=torch.uint8, device=device)

    def pack(self, header: Sequence[int], tensors: Sequence[torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
        """One uint8 buffer holding `header` (at most HEADER_FIELDS ints) and `tensors` (checked against the specs)."""
        if len(header) > HEADER_FIELDS:
            raise ValueError(f"a header holds at most {HEADER_FIELDS} fields, got {len(header)}")
        if len(tensors) != len(self.specs):
            raise ValueError(f"the message carries {len(self.specs)} tensors, got {len(tensors)}")
        buf = torch.zeros(self.nbytes, dtype=torch.uint8, device=device)
        head = torch.zeros(HEADER_FIELDS, dtype=torch.int64)
        head[: len(header)] = torch.tensor(list(header), dtype=torch.int64)
        buf[: HEADER_FIELDS * 8] = head.view(torch.uint8).to(device)
        for spec, offset, t in zip(self.specs, self.offsets, tensors):
            if tuple(t.shape) != spec.shape or t.dtype != spec.dtype:
                raise ValueError(f"tensor {tuple(t.shape)} {t.dtype} does not fit the message slot {spec.shape} {spec.dtype}")
            buf[offset:offset + spec.nbytes] = t.detach().contiguous().reshape(-1).view(torch.uint8).to(device)
        return buf

    def unpack(self, buf: torch.Tensor) -> tuple[list[int], list[torch.Tensor]]:
        """(header fields, tensors) of a received buffer; the tensors are copies, so the buffer can be reused."""
        header = buf[: HEADER_FIELDS * 8].cpu().view(torch.int64).tolist()
        tensors = [buf[offset:offset + spec.nbytes].view(spec.dtype).reshape(spec.shape).clone()
                   for spec, offset in zip(self.specs, self.offsets)]
        return header, tensors

    def unpack_block(self, buf: torch.Tensor) -> tuple[BlockHeader, list[torch.Tensor]]:
        """A block message: its `BlockHeader` and tensors."""
        fields, tensors = self.unpack(buf)
        return BlockHeader(*fields[: len(BlockHeader._fields)]), tensors


def _broadcast_options(root: int):
    from torch.distributed import BroadcastOptions

    opts = BroadcastOptions()
    opts.rootRank = root
    opts.rootTensor = 0
    return opts


def _process_group(store, rank: int, size: int, backend: str, timeout: datetime.timedelta):
    """A process group object on `store` (gloo on 127.0.0.1, or NCCL)."""
    if backend == "gloo":
        from torch._C._distributed_c10d import ProcessGroupGloo

        opts = ProcessGroupGloo._Options()
        opts._devices = [ProcessGroupGloo.create_device(hostname="127.0.0.1")]
        opts._timeout = timeout
        return ProcessGroupGloo(store, rank, size, opts)
    if backend == "nccl":
        from torch.distributed import ProcessGroupNCCL

        opts = ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return ProcessGroupNCCL(store, rank, size, opts)
    raise ValueError(f"unknown torch.distributed backend {backend!r}; expected gloo or nccl")


class Comm:
    """Point-to-point sends of message buffers and broadcasts between the TPP processes."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, backend: str, connect_timeout_s: float) -> None:
        import torch.distributed as dist

        self.rank, self.world_size = rank, world_size
        store = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=connect_timeout_s))
        self._store = store
        self.p2p = _process_group(dist.PrefixStore("tpp/p2p/", store), rank, world_size, backend, NO_TIMEOUT)
        self.coll = _process_group(dist.PrefixStore("tpp/coll/", store), rank, world_size, backend, NO_TIMEOUT)

    def send(self, buf: torch.Tensor, dst: int):
        """Start sending `buf` to `dst`; returns the work to wait on before reusing or dropping `buf`."""
        return self.p2p.send([buf], dst, 0)

    def recv(self, buf: torch.Tensor, src: int) -> None:
        """Receive the next message from `src` into `buf` (blocks, without a time limit)."""
        self.p2p.recv([buf], src, 0).wait()

    def broadcast(self, tensor: torch.Tensor, root: int):
        """Start a broadcast of `tensor` from `root` to every rank; returns the work."""
        return self.coll.broadcast([tensor], _broadcast_options(root))

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor] | None, root: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """Blocking broadcast of a list of tensors whose shapes only `root` knows (root passes them, others None)."""
        if self.rank == root:
            assert tensors is not None
            meta = [len(tensors)]
            for t in tensors:
                meta += [_DTYPES.index(t.dtype), t.dim(), *t.shape]
            head = torch.tensor([len(meta), *meta], dtype=torch.int64)
            size = torch.tensor([head.numel()], dtype=torch.int64, device=device)
        else:
            size = torch.zeros(1, dtype=torch.int64, device=device)
        self.broadcast(size, root).wait()
        head_buf = head.to(device) if self.rank == root else torch.zeros(int(size.item()), dtype=torch.int64, device=device)
        self.broadcast(head_buf, root).wait()
        meta = head_buf.cpu().tolist()[1:]
        count, pos, specs = meta[0], 1, []
        for _ in range(count):
            dtype, ndim = _DTYPES[meta[pos]], meta[pos + 1]
            specs.append(TensorSpec(tuple(meta[pos + 2:pos + 2 + ndim]), dtype))
            pos += 2 + ndim
        layout = MessageLayout(specs)
        buf = layout.pack([], list(tensors), device) if self.rank == root else layout.empty(device)
        self.broadcast(buf, root).wait()
        return layout.unpack(buf)[1]


_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.uint8]
