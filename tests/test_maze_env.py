"""Maze rules: perfect mazes, seeds, moves, observations, the oracle and the decision square."""

import numpy as np
import pytest

from steerscope.maze.env import (
    OBS_SIZE,
    REGION,
    SIZES,
    Maze,
    MazeEnv,
    decision_square,
    distances,
    generate_walls,
    observations,
    oracle_moves,
    parse_maze,
    test_maze,
    training_maze,
)

# A tree: the left column and top row lead to the corner; a side branch at (2, 0) leads to (2, 2).
HAND = """
.....
.####
..C#.
.###.
M....
"""


def _hand(cheese):
    maze = parse_maze(HAND)
    return Maze(maze.walls, maze.mouse, cheese)


@pytest.mark.parametrize("size", SIZES)
def test_generated_mazes_are_perfect(size):
    walls = generate_walls(size, np.random.default_rng(size))
    n = (size + 1) // 2
    assert not walls[::2, ::2].any() and walls[1::2, 1::2].all()
    assert (~walls).sum() == 2 * n * n - 1  # n^2 cells joined by n^2 - 1 corridors: a spanning tree
    maze = parse_maze("\n".join("".join("#" if w else "." for w in row) for row in walls).replace(".", "M", 1))
    assert (distances(maze, maze.mouse)[~walls] >= 0).all()  # everything reachable


def test_seeds_reproduce_and_differ():
    a, b, c = training_maze(3), training_maze(3), training_maze(4)
    assert np.array_equal(a.walls, b.walls) and a.cheese == b.cheese
    assert a.walls.shape != c.walls.shape or not np.array_equal(a.walls, c.walls) or a.cheese != c.cheese
    assert np.array_equal(test_maze(3).walls, test_maze(3).walls) and test_maze(3).cheese == test_maze(3).cheese


def test_training_cheese_is_top_right_and_test_cheese_anywhere():
    for seed in range(100):
        m = training_maze(seed)
        assert m.cheese[0] < REGION and m.cheese[1] >= m.size - REGION and m.mouse == m.start
    outside = [m for m in map(test_maze, range(100)) if m.cheese[0] >= REGION or m.cheese[1] < m.size - REGION]
    assert len(outside) > 30


def test_moves_respect_walls_and_borders():
    m = _hand((2, 2))
    assert m.step(0).mouse == (3, 0)  # up
    assert m.step(1).mouse == (4, 0)  # down: off the maze, stays
    assert m.step(2).mouse == (4, 0)  # left: off the maze, stays
    assert m.step(3).mouse == (4, 1)  # right
    assert m.step(3).step(0).mouse == (4, 1)  # up from (4, 1) is a wall
    with pytest.raises(ValueError, match="wall"):
        m.with_mouse((1, 1))


def test_env_rewards_the_cheese_and_times_out():
    env = MazeEnv(_hand((2, 2)), max_steps=10)
    for move, done in [(0, False), (0, False), (3, False)]:
        assert env.step(move)[1:] == (0.0, done)
    assert env.step(3)[1:] == (1.0, True)
    env.reset()
    results = [env.step(1) for _ in range(10)]
    assert [r[2] for r in results] == [False] * 9 + [True] and results[-1][1] == 0.0


def test_observation_channels_and_padding():
    m = training_maze(0)
    obs = observations([m])[0]
    o = (OBS_SIZE - m.size) // 2
    assert obs.shape == (3, OBS_SIZE, OBS_SIZE)
    assert obs[0, :o].all() and np.array_equal(obs[0, o : o + m.size, o : o + m.size], m.walls)
    assert obs[1].sum() == 1 and obs[1, o + m.mouse[0], o + m.mouse[1]] == 1
    assert obs[2].sum() == 1 and obs[2, o + m.cheese[0], o + m.cheese[1]] == 1
    assert observations([m.without_cheese()])[0, 2].sum() == 0


def test_oracle_reaches_the_cheese_in_the_shortest_number_of_moves():
    m = test_maze(7)
    moves, dist = oracle_moves(m), distances(m, m.cheese)
    for sq in m.open_squares():
        here, n = m.with_mouse(sq), 0
        while here.mouse != m.cheese:
            here, n = here.step(int(moves[here.mouse])), n + 1
        assert n == dist[sq]


def test_decision_square_on_hand_made_mazes():
    d = decision_square(_hand((2, 2)))
    assert (d.square, d.cheese_move, d.corner_move) == ((2, 0), 3, 0)  # right to the cheese, up to the corner
    d = decision_square(_hand((3, 4)))
    assert (d.square, d.cheese_move, d.corner_move) == ((4, 0), 3, 0)  # parts at the start
    assert decision_square(_hand((0, 2))) is None  # cheese on the way to the corner
    assert decision_square(_hand((0, 4))) is None  # cheese in the corner
