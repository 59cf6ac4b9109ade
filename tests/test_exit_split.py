"""EXIT-6: sizing the child orders of an exit larger than max_order_notional (pure functions)."""
from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tradebook.phases.exit_split import SAFETY, child_id, parent_of, part_number, split_sizes


def test_split_sizes_when_exit_over_cap_then_children_within_cap_and_sum_to_qty():
    """EXIT-6: 15k of stock at 100 with a 10k cap -> two whole-share children of 75."""
    assert split_sizes(150, 100.0, 10_000) == [75.0, 75.0]
    assert split_sizes(50, 100.0, 10_000) is None                   # within the cap: no split
    assert split_sizes(3, 20_000.0, 10_000) is None                 # one share above the cap: cannot


def test_child_ids_when_split_then_deterministic_and_parent_recoverable():
    """EXIT-6: deterministic ids per child (hence client ids); a re-split child maps to the first parent."""
    kid = child_id("20110721-AAPL-EXIT-STOP_LOSS", 2)
    assert kid == "20110721-AAPL-EXIT-STOP_LOSS-part2" and part_number(kid) == 2
    assert parent_of(child_id(kid, 1)) == "20110721-AAPL-EXIT-STOP_LOSS" and part_number("x-EXIT-2") == 0


@settings(max_examples=200, deadline=None)
@given(qty=st.one_of(st.integers(1, 100_000).map(float), st.floats(0.001, 100_000)),
       price=st.floats(0.5, 5_000), cap=st.floats(100, 50_000))
@example(qty=1.5, price=2351.0, cap=100.0)   # the rest of the millionth cuts once put the last child over
def test_split_sizes_property_when_split_then_each_child_within_cap_and_total_kept(qty, price, cap):
    """EXIT-6 property (200 generated cases): every child is worth at most the cap, the children
    add up to the exit's quantity, whole-share exits split into whole shares."""
    sizes = split_sizes(qty, price, cap)
    if sizes is None:
        return
    assert len(sizes) > 1 and abs(sum(sizes) - qty) < 1e-6
    assert all(0 < q and q * price <= cap * SAFETY * (1 + 1e-9) for q in sizes)
    if qty.is_integer():
        assert all(q.is_integer() for q in sizes)
