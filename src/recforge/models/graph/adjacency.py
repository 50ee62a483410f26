"""The symmetric normalised adjacency of the user-item graph and its propagation.

The bipartite graph has the users as nodes ``0 .. n_users - 1`` and the items after them;
``R`` is the binary user x item matrix. Its normalised adjacency is
``A = D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` with ``D`` the node degrees (a node of degree 0 has
an empty row and column). `propagate` averages ``A^k E`` for ``k = 0 .. layers`` (LightGCN's
layer combination by mean) with one sparse-dense product per layer; since ``A`` is
symmetric, the backward pass of ``A X`` is ``A G`` (`SymmetricProduct`), so no transpose is
built.

The product runs on the device of the embeddings (`Graph`): on the CPU a compiled kernel over
the CSR rows, parallel over rows with each row summed in a fixed order, so the result does not
depend on the thread count (it is about twice as fast as PyTorch's sparse CSR product on one
thread, and runs on as many threads as PyTorch is given); on CUDA PyTorch's sparse CSR product.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
import torch

from recforge.models.factorization.factors import numba_threads


def degree_scale(degrees: np.ndarray) -> np.ndarray:
    """``1 / sqrt(degree)``, 0 for degree 0, as float32."""
    degrees = np.asarray(degrees, dtype=np.float64)
    return np.where(degrees > 0, 1.0 / np.sqrt(np.maximum(degrees, 1.0)), 0.0).astype(np.float32)


def binary_matrix(interactions: sp.spmatrix) -> sp.csr_matrix:
    """``interactions`` as a float32 CSR matrix of ones (any stored non-zero is an edge)."""
    binary = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
    binary.sum_duplicates()
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary


def normalized_adjacency(interactions: sp.spmatrix) -> sp.csr_matrix:
    """``D^-1/2 [[0, R], [R^T, 0]] D^-1/2`` (float32 CSR with sorted indices, ``n_users +
    n_items`` square) of the user x item matrix ``interactions`` taken as binary
    (`binary_matrix`)."""
    binary = binary_matrix(interactions)
    user_scale = degree_scale(np.diff(binary.indptr))
    item_scale = degree_scale(np.bincount(binary.indices, minlength=binary.shape[1]))
    scaled = sp.diags(user_scale) @ binary @ sp.diags(item_scale)
    adjacency = sp.bmat([[None, scaled], [scaled.T, None]], format="csr", dtype=np.float32)
    adjacency.sort_indices()
    return adjacency


def torch_csr(matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR tensor (int64 indices) on ``device``."""
    return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                   torch.from_numpy(matrix.indices.astype(np.int64)),
                                   torch.from_numpy(matrix.data.astype(np.float32)),
                                   size=matrix.shape, device=device)


@numba.njit(parallel=True, cache=True, nogil=True)
def _csr_dense_product(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                       dense: np.ndarray, out: np.ndarray) -> None:
    """``out = A @ dense`` for the CSR matrix ``A``; each row summed in index order."""
    width = out.shape[1]
    for row in numba.prange(out.shape[0]):
        for k in range(width):
            out[row, k] = 0.0
        for j in range(indptr[row], indptr[row + 1]):
            col, weight = indices[j], data[j]
            for k in range(width):
                out[row, k] += weight * dense[col, k]


class Graph:
    """A sparse matrix (the normalised adjacency) ready for products with dense float32
    tensors on ``device``: kept as scipy CSR arrays for the CPU kernel, as a torch sparse CSR
    tensor on CUDA."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.shape = matrix.shape
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        self.tensor = None if self.device.type == "cpu" else torch_csr(self.matrix, self.device)

    def mm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A @ dense`` (no autograd; see `SymmetricProduct`)."""
        if self.tensor is not None:
            return torch.sparse.mm(self.tensor, dense.float().contiguous())
        values = np.ascontiguousarray(dense.detach().float().numpy())
        out = np.empty((self.shape[0], values.shape[1]), dtype=np.float32)
        threads = torch.get_num_threads()
        with numba_threads(threads):
            _csr_dense_product(self.matrix.indptr, self.matrix.indices, self.matrix.data,
                               values, out)
        torch.set_num_threads(threads)  # numba's OpenMP layer resets PyTorch's thread count
        return torch.from_numpy(out)


class SymmetricProduct(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A`` (a `Graph`, no gradient) and a dense ``X``; the
    gradient with respect to ``X`` is ``A @ G``."""

    @staticmethod
    def forward(ctx: Any, graph: Graph, dense: torch.Tensor) -> torch.Tensor:
        ctx.graph = graph
        return graph.mm(dense)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.graph.mm(grad)


def propagate(graph: Graph, ego: torch.Tensor, layers: int) -> torch.Tensor:
    """``mean(E, A E, ..., A^layers E)`` of the node embeddings ``ego``, differentiable."""
    layer = ego
    total = ego
    for _ in range(layers):
        layer = SymmetricProduct.apply(graph, layer)
        total = total + layer
    return total / (layers + 1)


@torch.no_grad()
def layer_sums(graph: Graph, ego: torch.Tensor, layers: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of A^k E for k < layers, sum for k <= layers)``: what folding in a new node
    and the mean combination need (no gradient)."""
    layer = ego.detach().float()
    before_last = torch.zeros_like(layer)
    for _ in range(layers):
        before_last = before_last + layer
        layer = graph.mm(layer)
    return before_last, before_last + layer
