"""Elo ratings fitted to a payoff table: they recover known strengths and do not depend on match order."""

import numpy as np
import pytest

from marl_edge.league.elo import elo_ratings, expected_score


def test_ratings_recover_the_strengths_that_generated_the_games():
    truth = np.array([1000.0, 1200.0, 900.0, 1400.0])
    truth -= truth.mean() - 1000.0
    n = 20_000
    wins = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            if i != j:
                wins[i, j] = n * expected_score(truth[i], truth[j])  # expected counts: the fit is exact up to the prior
    r = elo_ratings(wins, prior_games=0.0)
    assert np.allclose(r, truth, atol=0.5), r
    assert r.mean() == pytest.approx(1000.0)


def test_unbeaten_member_stays_finite_and_draws_count_half():
    wins = np.array([[0, 10], [0, 0]])
    r = elo_ratings(wins)
    assert np.isfinite(r).all() and r[0] > r[1] + 200
    even = elo_ratings(np.zeros((2, 2)), draws=np.array([[0, 7], [3, 0]]))
    assert np.allclose(even, 1000.0)
    assert np.allclose(elo_ratings(np.zeros((3, 3))), 1000.0)  # nobody played: everyone at base


def test_order_of_the_counts_does_not_matter_and_bad_shapes_are_refused():
    rng = np.random.default_rng(0)
    wins = rng.integers(0, 20, size=(5, 5)) * (1 - np.eye(5))
    perm = rng.permutation(5)
    r = elo_ratings(wins)
    assert np.allclose(elo_ratings(wins[np.ix_(perm, perm)]), r[perm])
    with pytest.raises(ValueError, match="square"):
        elo_ratings(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=">= 0"):
        elo_ratings(-np.ones((2, 2)))
