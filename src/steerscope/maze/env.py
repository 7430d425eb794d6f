"""A procgen-like maze in numpy: perfect mazes of odd size, a mouse, a piece of cheese, four moves.

Squares are (row, col) with row 0 at the top. Open squares sit at even coordinates, corridors between
them at one odd coordinate, and (odd, odd) squares are always walls. The mouse starts in the
bottom-left corner. Training mazes place the cheese in the top-right `REGION` x `REGION` squares;
test mazes place it on any open square, so "go to the top-right" and "go to the cheese" come apart.
Observations are three channels (walls, mouse, cheese) centred in an `OBS_SIZE` square padded with walls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

MOVES = ("up", "down", "left", "right")
DELTAS = ((-1, 0), (1, 0), (0, -1), (0, 1))
SIZES = (5, 7, 9, 11, 13, 15)
OBS_SIZE = 15
REGION = 5
CHANNELS = ("walls", "mouse", "cheese")
_TRAIN_STREAM, _TEST_STREAM = 0, 1

Square = tuple[int, int]


@dataclass(frozen=True, eq=False)
class Maze:
    """Walls (bool [s, s]), the mouse's square and the cheese's square (None: no cheese)."""

    walls: np.ndarray
    mouse: Square
    cheese: Square | None
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        s = self.walls.shape[0]
        if self.walls.shape != (s, s) or s % 2 == 0:
            raise ValueError(f"walls must be a square of odd size, got shape {self.walls.shape}")
        for name, sq in (("mouse", self.mouse), ("cheese", self.cheese)):
            if sq is not None and not self.is_open(sq):
                raise ValueError(f"the {name} square {sq} is a wall or outside the {s}x{s} maze")

    @property
    def size(self) -> int:
        return int(self.walls.shape[0])

    @property
    def corner(self) -> Square:
        """The top-right square, where training cheese lives."""
        return (0, self.size - 1)

    @property
    def start(self) -> Square:
        """The bottom-left square, where the mouse starts."""
        return (self.size - 1, 0)

    def is_open(self, sq: Square) -> bool:
        r, c = sq
        return 0 <= r < self.size and 0 <= c < self.size and not self.walls[r, c]

    def open_squares(self) -> list[Square]:
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(~self.walls), strict=True)]

    def with_mouse(self, sq: Square) -> Maze:
        return replace(self, mouse=(int(sq[0]), int(sq[1])))

    def without_cheese(self) -> Maze:
        return replace(self, cheese=None)

    def step(self, move: int) -> Maze:
        """The maze after one move; a move into a wall or off the maze leaves the mouse where it is."""
        dr, dc = DELTAS[move]
        target = (self.mouse[0] + dr, self.mouse[1] + dc)
        return self.with_mouse(target) if self.is_open(target) else self

    def observation(self, obs_size: int = OBS_SIZE) -> np.ndarray:
        """float32 [3, obs_size, obs_size]: walls (padding counts as wall), mouse, cheese."""
        return observations([self], obs_size)[0]

    def render(self) -> str:
        """Text picture: '#' wall, '.' open, 'M' mouse, 'C' cheese."""
        rows = []
        for r in range(self.size):
            row = ""
            for c in range(self.size):
                sq = (r, c)
                row += "M" if sq == self.mouse else "C" if sq == self.cheese else "#" if self.walls[r, c] else "."
            rows.append(row)
        return "\n".join(rows)


def observations(mazes: list[Maze], obs_size: int = OBS_SIZE) -> np.ndarray:
    """Stacked observations of several mazes: float32 [n, 3, obs_size, obs_size]."""
    out = np.zeros((len(mazes), 3, obs_size, obs_size), dtype=np.float32)
    out[:, 0] = 1.0
    for i, m in enumerate(mazes):
        if m.size > obs_size:
            raise ValueError(f"a {m.size}x{m.size} maze does not fit a {obs_size}x{obs_size} observation")
        o = (obs_size - m.size) // 2
        out[i, 0, o : o + m.size, o : o + m.size] = m.walls
        out[i, 1, o + m.mouse[0], o + m.mouse[1]] = 1.0
        if m.cheese is not None:
            out[i, 2, o + m.cheese[0], o + m.cheese[1]] = 1.0
    return out


def parse_maze(text: str) -> Maze:
    """A maze from its `render()` picture (for hand-made mazes in tests and notebooks)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    grid = np.array([list(line) for line in lines])
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1]:
        raise ValueError("a maze picture must be a square of equal-length lines")
    walls = grid == "#"
    found = {ch: [(int(r), int(c)) for r, c in zip(*np.nonzero(grid == ch), strict=True)] for ch in "MC"}
    if len(found["M"]) != 1 or len(found["C"]) > 1:
        raise ValueError("a maze picture needs exactly one 'M' (mouse) and at most one 'C' (cheese)")
    return Maze(walls, found["M"][0], found["C"][0] if found["C"] else None)


# --- generation ---------------------------------------------------------------------------------


def generate_walls(size: int, rng: np.random.Generator) -> np.ndarray:
    """A perfect maze (exactly one path between two open squares) by randomized Kruskal, as procgen does."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"maze size must be odd and at least 3, got {size}")
    n = (size + 1) // 2
    walls = np.ones((size, size), dtype=bool)
    walls[::2, ::2] = False
    parent = list(range(n * n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = [(r, c, r, c + 1) for r in range(n) for c in range(n - 1)]
    edges += [(r, c, r + 1, c) for r in range(n - 1) for c in range(n)]
    for k in rng.permutation(len(edges)):
        r1, c1, r2, c2 = edges[k]
        a, b = find(r1 * n + c1), find(r2 * n + c2)
        if a != b:
            parent[a] = b
            walls[r1 + r2, c1 + c2] = False
    return walls


def _rng(stream: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([stream, seed])


def training_maze(seed: int, sizes: tuple[int, ...] = SIZES, region: int = REGION) -> Maze:
    """A seeded training maze: the cheese on an open square of the top-right `region` x `region` squares."""
    rng = _rng(_TRAIN_STREAM, seed)
    size = int(rng.choice(sizes))
    walls = generate_walls(size, rng)
    start = (size - 1, 0)
    choices = [(r, c) for r in range(min(region, size)) for c in range(max(0, size - region), size) if not walls[r, c]]
    choices = [sq for sq in choices if sq != start]
    return Maze(walls, start, choices[int(rng.integers(len(choices)))], seed=seed)


def test_maze(seed: int, sizes: tuple[int, ...] = SIZES) -> Maze:
    """A seeded test maze: the cheese on any open square but the start (a stream apart from training)."""
    rng = _rng(_TEST_STREAM, seed)
    size = int(rng.choice(sizes))
    walls = generate_walls(size, rng)
    start = (size - 1, 0)
    choices = [(int(r), int(c)) for r, c in zip(*np.nonzero(~walls), strict=True) if (r, c) != start]
    return Maze(walls, start, choices[int(rng.integers(len(choices)))], seed=seed)


test_maze.__test__ = False  # not a pytest test, despite the name


# --- paths --------------------------------------------------------------------------------------


def distances(maze: Maze, target: Square) -> np.ndarray:
    """Moves needed from every square to `target` (breadth-first search); -1 for walls and unreachable."""
    dist = np.full(maze.walls.shape, -1, dtype=np.int64)
    if not maze.is_open(target):
        raise ValueError(f"target {target} is not an open square")
    dist[target] = 0
    queue = deque([target])
    while queue:
        r, c = queue.popleft()
        for dr, dc in DELTAS:
            nxt = (r + dr, c + dc)
            if maze.is_open(nxt) and dist[nxt] < 0:
                dist[nxt] = dist[r, c] + 1
                queue.append(nxt)
    return dist


def oracle_moves(maze: Maze, target: Square | None = None) -> np.ndarray:
    """The shortest-path move toward `target` (default: the cheese) from every square; -1 where none."""
    target = maze.cheese if target is None else target
    if target is None:
        raise ValueError("this maze has no cheese; pass a target square")
    dist = distances(maze, target)
    moves = np.full(dist.shape, -1, dtype=np.int64)
    for r, c in maze.open_squares():
        if dist[r, c] <= 0:
            continue
        for k, (dr, dc) in enumerate(DELTAS):
            nxt = (r + dr, c + dc)
            if maze.is_open(nxt) and dist[nxt] == dist[r, c] - 1:
                moves[r, c] = k
                break
    return moves


def shortest_path(maze: Maze, a: Square, b: Square) -> list[Square]:
    """The squares from `a` to `b` inclusive (unique in a perfect maze)."""
    dist = distances(maze, b)
    if dist[a] < 0:
        raise ValueError(f"{b} cannot be reached from {a}")
    path = [a]
    while path[-1] != b:
        r, c = path[-1]
        path.append(
            next(
                (r + dr, c + dc)
                for dr, dc in DELTAS
                if maze.is_open((r + dr, c + dc)) and dist[r + dr, c + dc] == dist[r, c] - 1
            )
        )
    return path


@dataclass(frozen=True)
class Decision:
    """Where the paths from the start to the cheese and to the top-right corner part."""

    square: Square
    cheese_move: int  # the move toward the cheese from `square`
    corner_move: int  # the move toward the top-right corner from `square`


def _move_between(a: Square, b: Square) -> int:
    return DELTAS.index((b[0] - a[0], b[1] - a[1]))


def decision_square(maze: Maze, start: Square | None = None) -> Decision | None:
    """The last square the start->cheese and start->corner paths share, or None if they never part.

    They never part when the cheese lies on the way to the corner or the corner on the way to the cheese.
    """
    if maze.cheese is None:
        raise ValueError("a decision square needs a maze with cheese")
    start = maze.start if start is None else start
    to_cheese = shortest_path(maze, start, maze.cheese)
    to_corner = shortest_path(maze, start, maze.corner)
    k = 0
    while k + 1 < min(len(to_cheese), len(to_corner)) and to_cheese[k + 1] == to_corner[k + 1]:
        k += 1
    if k + 1 >= len(to_cheese) or k + 1 >= len(to_corner):
        return None
    here = to_cheese[k]
    return Decision(here, _move_between(here, to_cheese[k + 1]), _move_between(here, to_corner[k + 1]))


class MazeEnv:
    """A minimal episode loop: `reset()`, then `step(move)` -> (maze, reward, done). Reward 1 on the cheese."""

    def __init__(self, maze: Maze, max_steps: int | None = None):
        self.initial = maze
        self.max_steps = max_steps if max_steps is not None else 4 * maze.size * maze.size
        self.reset()

    def reset(self) -> Maze:
        self.maze, self.steps = self.initial, 0
        return self.maze

    def step(self, move: int) -> tuple[Maze, float, bool]:
        if not 0 <= move < len(MOVES):
            raise ValueError(f"move must be 0..3 ({', '.join(MOVES)}), got {move}")
        self.maze = self.maze.step(move)
        self.steps += 1
        reached = self.maze.cheese is not None and self.maze.mouse == self.maze.cheese
        return self.maze, float(reached), reached or self.steps >= self.max_steps
