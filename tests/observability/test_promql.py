"""The PromQL lexer the real-Prometheus checks rely on: it must find every selector and label."""

from __future__ import annotations

import pytest

from tests.support.promql import Matcher, PromQLError, Selector, references, substitute


def test_selectors_and_grouping_labels_of_a_ratio():
    refs = references('sum by (model) (rate(a_total{status=~"5.."}[5m])) / sum by (model) (rate(a_total[5m])) > 0.05')
    assert refs.selectors == (Selector("a_total", (Matcher("status", "=~", '"5.."'),)), Selector("a_total", ()))
    assert refs.grouping_labels == {"model"}


@pytest.mark.parametrize(("expr", "names", "labels"), [
    ("histogram_quantile(0.99, sum by (model, le) (rate(x_bucket[1m]))) > 1", {"x_bucket"}, {"model", "le"}),
    ("sum(rate(x[5m] offset 1h)) without (instance)", {"x"}, {"instance"}),
    ("a - on (model) group_left (version) b", {"a", "b"}, {"model", "version"}),
    ("a - ignoring (pod) group_right b and bool c", {"a", "b", "c"}, {"pod"}),
    ("max by (m) (a) == 0 and max by (m) (b) > 0", {"a", "b"}, {"m"}),
    ("max_over_time(a[10m:1m]) unless b", {"a", "b"}, set()),
    ("# a comment\nsum(a) > inf", {"a"}, set()),
    ("topk(3, sum by (pod) (rate(container_cpu_usage_seconds_total{container!=\"\"}[1m])))",
     {"container_cpu_usage_seconds_total"}, {"pod"}),
])
def test_metric_names_are_told_from_functions_keywords_and_labels(expr, names, labels):
    refs = references(expr)
    assert refs.metric_names == names and refs.grouping_labels == labels


def test_a_selector_without_a_name_is_kept():
    assert references('{__name__=~"up"}').selectors == (Selector("", (Matcher("__name__", "=~", '"up"'),)),)


@pytest.mark.parametrize("bad", ['a{b="c"', "a{b}", 'rate(a[5m]', "a ? b"])
def test_unreadable_text_is_an_error(bad):
    with pytest.raises(PromQLError):
        references(bad)


def test_grafana_variables_are_substituted_and_an_unknown_one_is_an_error():
    assert substitute('x{m=~"$model",v=~"${version}"}[$__rate_interval]',
                      {"model": "digits", "version": "1", "__rate_interval": "15s"}) == 'x{m=~"digits",v=~"1"}[15s]'
    with pytest.raises(PromQLError, match=r"\$modle"):
        substitute('x{m=~"$modle"}', {"model": "digits"})
