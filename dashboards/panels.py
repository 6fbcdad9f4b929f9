"""Building blocks shared by the dashboards: the data source, variables, panels, rendering.

Every panel queries the Prometheus data source chosen by the ``datasource`` variable. Panels are
time series with a legend and a shared tooltip, except breaker states, drawn as a state timeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from string import ascii_uppercase

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    Row,
    TextBoxVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.statetimeline import Panel as StateTimeline
from grafana_foundation_sdk.builders.timeseries import Panel as TimeSeries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    DataSourceRef,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from .promql import N

__all__ = [
    "DATASOURCE",
    "Target",
    "breaker_timeline",
    "dashboard",
    "label_variable",
    "render",
    "row",
    "textbox_variable",
    "timeseries",
]

#: The Prometheus data source picked by the ``datasource`` variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Every tracedagent dashboard carries this tag; the dashboards link to each other through it.
TAG = "tracedagent"

#: A query: (legend, PromQL). The legend names series with ``{{label}}``.
Target = tuple[str, str]


def _query(ref_id: str, legend: str, expr: str) -> Dataquery:
    return Dataquery().ref_id(ref_id).expr(expr).legend_format(legend).range().editor_mode(QueryEditorMode.CODE)


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs([])
    )


def _tooltip() -> common_builders.VizTooltipOptions:
    return common_builders.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)


def timeseries(
    title: str,
    description: str,
    unit: str,
    *targets: Target,
    width: int = 12,
    max_value: float | None = None,
) -> TimeSeries:
    """A time series panel of ``targets`` (legend, PromQL), in ``unit`` (a Grafana unit id)."""
    panel = (
        TimeSeries()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(8)
        .unit(unit)
        .min(0)
        .line_width(1)
        .fill_opacity(10)
        .show_points(VisibilityMode.NEVER)
        .legend(_legend())
        .tooltip(_tooltip())
    )
    if max_value is not None:
        panel = panel.max(max_value)
    for ref_id, (legend, expr) in zip(ascii_uppercase, targets, strict=False):
        panel = panel.with_target(_query(ref_id, legend, expr))
    return panel


#: How the breaker's gauge values read: tracedagent_circuit_state is 0 closed, 1 half-open, 2 open.
_BREAKER_LOOK = {"closed": "green", "half_open": "yellow", "open": "red"}


def breaker_timeline(title: str, description: str, target: Target, *, width: int = 12) -> StateTimeline:
    """A state timeline of breaker states (closed, half-open, open), one lane per tool."""
    mapping = ValueMap(
        {
            str(value): ValueMappingResult(text=state.replace("_", "-"), color=_BREAKER_LOOK[state], index=value)
            for state, value in N.CIRCUIT_VALUE.items()
        }
    )
    thresholds = (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color="green"), Threshold(value=2, color="red")])
    )
    legend, expr = target
    return (
        StateTimeline()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(8)
        .mappings([mapping])
        .thresholds(thresholds)
        .show_value(VisibilityMode.AUTO)
        .merge_values(True)
        .legend(_legend())
        .tooltip(_tooltip())
        .with_target(_query("A", legend, expr))
    )


def row(title: str) -> Row:
    return Row(title)


def _datasource_variable() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(
    name: str, label: str, metric: str, *matchers: str, multi: bool = True, description: str = ""
) -> QueryVariable:
    """A variable listing the values of the label ``name`` of ``metric{matchers}``.

    Multi-valued variables offer All, which matches any value (``.*``), including series that do not
    exist yet when the dashboard loads.
    """
    source = f"{metric}{{{', '.join(matchers)}}}" if matchers else metric
    variable = (
        QueryVariable(name)
        .label(label)
        .description(description or f"The {label.lower()}s to show ({name} label of {metric}).")
        .datasource(DATASOURCE)
        .query(f"label_values({source}, {name})")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        variable = variable.all_value(".*").current(VariableOption(selected=True, text=["All"], value=["$__all"]))
    return variable


def textbox_variable(name: str, label: str, default: str, description: str) -> TextBoxVariable:
    """A variable the viewer types a value into (``default`` until then), such as a threshold."""
    return (
        TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(VariableOption(selected=True, text=default, value=default))
    )


def dashboard(
    title: str,
    uid: str,
    description: str,
    variables: Iterable[QueryVariable | TextBoxVariable],
    panels: Iterable[TimeSeries | StateTimeline | Row],
) -> Dashboard:
    """A dashboard of ``panels`` (rows start new sections), with a data source variable first."""
    board = (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .link(
            DashboardLink("tracedagent dashboards")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(_datasource_variable())
    )
    for variable in variables:
        board = board.with_variable(variable)
    for panel in panels:
        board = board.with_row(panel) if isinstance(panel, Row) else board.with_panel(panel)
    return board


def render(board: Dashboard) -> str:
    """The dashboard's JSON as committed: panels numbered in order, keys sorted, a final newline."""
    model = board.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"
