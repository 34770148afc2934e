"""Build page: start from a preset, edit the layer stack, and see shapes, parameters and a diagram at every change.

The network lives in `st.session_state.network` (a plain spec; the Train page reads it) and
its working copy with per-layer uids in `st.session_state.build_work`. Editing, checking,
saving and link sharing are `core.builder_state`; this page reads widgets and renders.
"""

from __future__ import annotations

import streamlit as st

from core.model import vocabulary
from core.training import presets
from core.views import builder_state as builder
from core.views import plots
from core.views.plots import network_diagram
from pages.common import DEFAULT_PRESET, guide, language, require_frame, save_draft, t

require_frame()

EMPTY = ""  # The "start from" choice for an empty network.


# ----------------------------------------------------------------------------- state and callbacks


def working_copy() -> dict:
    """The working copy, rebuilt with fresh uids when another page or a link replaced the network."""
    work = st.session_state.get("build_work")
    if work is None or builder.to_spec(work) != st.session_state.get("network"):
        try:
            work = builder.editable(st.session_state.get("network") or presets.get(DEFAULT_PRESET).network)
        except builder.LoadError as error:
            st.error(f"{t('build.load_error.not_network')} {error.render(language())}")
            work = builder.editable(presets.get(DEFAULT_PRESET).network)
        st.session_state.build_work = work
    # Widget values arrive in session state before the script runs: take them first, so that
    # titles, checks and errors drawn above a widget already reflect its new value.
    for position, layer in enumerate(work["layers"]):
        for name, field in vocabulary.LAYER_FIELDS[layer["kind"]].items():
            key = field_key(layer, name)
            if key in st.session_state and (st.session_state[key] is not None or field.optional):
                layer = builder.update_field(layer, name, st.session_state[key])
        work["layers"][position] = layer
    work["normalize"] = st.session_state.get(normalize_key(work), work["normalize"])
    return work


def field_key(layer: dict, name: str) -> str:
    return f"build-{layer['uid']}-{name}"


def normalize_key(work: dict) -> str:
    return f"build-{work['uid']}-normalize"


def replace_network(spec: dict, preset: str | None) -> None:
    st.session_state.build_work = builder.editable(spec)
    st.session_state.network = builder.to_spec(st.session_state.build_work)
    st.session_state.preset = preset


def load_preset() -> None:
    name = st.session_state.build_start
    if name is None:  # Nothing chosen yet (the network came from a link, a file or a run).
        return
    replace_network(presets.get(name).network if name else {"layers": [], "normalize": True}, name or None)


def edit_layers(change, *args) -> None:
    work = st.session_state.build_work
    work["layers"] = change(work["layers"], *args)
    st.session_state.network = builder.to_spec(work)


def load_file() -> None:
    uploaded = st.session_state.get("build_upload")
    if uploaded is None:
        return
    try:
        replace_network(builder.spec_from_json(uploaded.getvalue()), None)
        st.session_state.build_file_message = ("success", t("build.loaded", file=uploaded.name))
    except builder.LoadError as error:
        st.session_state.build_file_message = ("error", f"{t(f'build.load_error.{error.reason}')} {error.render(language())}")


# ----------------------------------------------------------------------------- display names


def kind_name(kind: str) -> str:
    return t(f"build.kind.{kind}")


def layer_title(layer: dict) -> str:
    details = builder.layer_label(layer, language())
    return f"{kind_name(layer['kind'])} · {details}" if details else kind_name(layer["kind"])


def preset_text(name: str, part: str) -> str:
    return t(f"build.preset.{name}.{part}")


# ----------------------------------------------------------------------------- sections


def start_row(network: dict) -> None:
    """Choosing a preset loads it at once; its caption shows only while the network is still that preset's."""
    names = [EMPTY, *presets.all_presets()]
    current = st.session_state.get("preset")
    # Labels are computed now: format_func may be called outside this run (AppTest does).
    labels = {name: preset_text(name, "title") if name else t("build.empty_network") for name in names}
    st.selectbox(
        t("build.start_from"), names, index=names.index(current) if current in names else None, key="build_start",
        format_func=labels.get, placeholder=t("build.choose_preset"), on_change=load_preset,
    )
    if unedited := builder.unedited_preset(network, current):
        preset = presets.get(unedited)
        st.caption(f"**{preset_text(unedited, 'title')}** — {preset_text(unedited, 'description')}  \n{t('build.preset_source', source=preset.source)}")
    elif current in presets.all_presets():
        edited, again = st.columns([3, 1], vertical_alignment="center")
        edited.caption(t("build.preset_edited", preset=preset_text(current, "title")))
        again.button(t("build.reload_preset"), key="build_reload", on_click=load_preset, type="tertiary", icon=":material/undo:")


def layer_cards(work: dict, checked: builder.Checked) -> None:
    st.subheader(t("build.layers_heading"))
    with st.container(border=True):
        st.markdown(t("build.input_title", shape=builder.format_shape(vocabulary.INPUT_SHAPE)))
        st.checkbox(t("build.normalize"), value=work["normalize"], key=normalize_key(work), help=t("build.normalize_help"))
    if not work["layers"]:
        st.info(t("build.empty_hint"))
    for index, layer in enumerate(work["layers"]):
        with st.container(border=True):
            layer_card(index, layer, len(work["layers"]), checked)
    add_layer_row(work)


def layer_card(index: int, layer: dict, count: int, checked: builder.Checked) -> None:
    title, buttons = st.columns([3, 1], vertical_alignment="center")
    title.markdown(f"**{index + 1}. {layer_title(layer)}**")
    uid = layer["uid"]
    with buttons.container(horizontal=True, horizontal_alignment="right", gap="small"):
        st.button(":material/arrow_upward:", key=f"build-{uid}-up", help=t("build.move_up"), type="tertiary", disabled=index == 0,
                  on_click=edit_layers, args=(builder.move_layer, uid, -1))
        st.button(":material/arrow_downward:", key=f"build-{uid}-down", help=t("build.move_down"), type="tertiary",
                  disabled=index == count - 1, on_click=edit_layers, args=(builder.move_layer, uid, 1))
        st.button(":material/delete:", key=f"build-{uid}-remove", help=t("build.remove"), type="tertiary",
                  on_click=edit_layers, args=(builder.remove_layer, uid))
    fields = list(vocabulary.LAYER_FIELDS[layer["kind"]].items())
    # Rows of three, in reading order; style.css (through the key) lets a row wrap to two when the card is narrow.
    with st.container(key=f"layer-fields-{uid}"):
        for start in range(0, len(fields), 3):
            for column, (name, field) in zip(st.columns(3), fields[start : start + 3]):
                with column:
                    field_widget(layer, name, field)
    layer_note(index, layer, checked)


def field_widget(layer: dict, name: str, field: vocabulary.Field) -> None:
    key, label, value = field_key(layer, name), t(f"build.field.{name}"), layer[name]
    help_text = t(f"build.help.{name}")
    if field.choices is not None:
        labels = {choice: t(f"build.choice.{name}.{choice}") for choice in field.choices}
        st.selectbox(label, field.choices, index=field.choices.index(value), key=key, help=help_text, format_func=labels.get)
    elif field.type is float:
        st.number_input(label, min_value=float(field.minimum), value=float(value), step=0.05, format="%.2f", key=key, help=help_text)
    else:
        # No upper bound on purpose: a learner may type a kernel too big and read why it fails.
        st.number_input(label, min_value=int(field.minimum), value=value, step=1, key=key, help=help_text,
                        placeholder=t("build.stride_same") if field.optional else None)


def layer_note(index: int, layer: dict, checked: builder.Checked) -> None:
    """The layer's explanation with its own numbers, or the error when this layer is the one that fails."""
    error = checked.error
    if error is not None and error.layer_index == index:
        st.error(f"{t('build.layer_problem')}  \n{error.render(language())}", icon="⚠️")
    elif index < len(checked.summary.rows):
        rows = checked.summary.rows
        input_shape = rows[index - 1].output_shape if index else checked.summary.input_shape
        st.caption(t(f"build.explain.{layer['kind']}", **builder.layer_numbers(layer, input_shape, rows[index])))


def add_layer_row(work: dict) -> None:
    """The kind offered first is the one that fits before the output (dense in an MLP, conv after an image layer)."""
    kinds = list(vocabulary.LAYER_FIELDS)
    fitting = builder.fitting_kind(work["layers"])
    choose, add = st.columns([2, 1], vertical_alignment="bottom")
    labels = {kind: kind_name(kind) for kind in kinds}
    # The key names the fitting kind, so the offer follows the network while the learner has not chosen otherwise.
    key = f"build_add_kind-{fitting}"
    choose.selectbox(t("build.add_kind"), kinds, index=kinds.index(fitting), format_func=labels.get, key=key)
    full = len(work["layers"]) >= vocabulary.MAX_LAYERS
    add.button(t("build.add_layer"), icon="➕", disabled=full, width="stretch",
               on_click=lambda: edit_layers(builder.insert_layer, st.session_state[key]))
    if full:
        st.caption(t("build.max_layers", count=vocabulary.MAX_LAYERS))


def summary_panel(work: dict, checked: builder.Checked) -> None:
    st.subheader(t("build.summary_heading"))
    error, rows = checked.error, checked.summary.rows
    if error is not None and work["layers"]:
        if error.layer_index is None:
            st.error(f"{t('build.invalid')}  \n{error.render(language())}", icon="⚠️")
        else:
            layer = work["layers"][error.layer_index]
            st.error(f"{t('build.invalid_layer', number=error.layer_index + 1, layer=layer_title(layer))}  \n{error.render(language())}", icon="⚠️")
            if rows:
                st.caption(t("build.partial_rows", count=len(rows)))
    if checked.valid:
        st.metric(t("build.total_parameters"), f"{checked.summary.total_parameters:,}")
    number, layer_column, shape_column, parameters_column = table_columns()
    table = shape_table(work, checked)
    # Tall enough for every row (35 px each), so the table never scrolls inside the page.
    st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3, column_config={
        number: st.column_config.TextColumn(width=28), layer_column: st.column_config.TextColumn(),
        shape_column: st.column_config.TextColumn(width=100), parameters_column: st.column_config.TextColumn(),
    })
    names = [t(f"build.kind_short.{layer['kind']}") for layer in work["layers"][: len(rows)]]
    failed = error is not None and error.layer_index is not None
    failed_name = t(f"build.kind_short.{work['layers'][error.layer_index]['kind']}") if failed else None
    if work["layers"]:
        figure = network_diagram(checked.summary, names, t("build.input_row"), t("build.parameters_count"), failed_name)
        st.plotly_chart(figure, config=plots.CHART_CONFIG)
    for first, second in builder.linear_neighbours(work["layers"]):
        st.warning(t("build.linear_warning", first=first + 1, second=second + 1), icon="📏")


def table_columns() -> list[str]:
    return [t("build.col.number"), t("build.col.layer"), t("build.col.shape"), t("build.col.parameters")]


def shape_table(work: dict, checked: builder.Checked) -> list[dict]:
    columns = table_columns()
    table = [dict(zip(columns, ["", t("build.input_row"), builder.format_shape(checked.summary.input_shape), "0"]))]
    for row in checked.summary.rows:
        layer = work["layers"][row.index]
        name = " · ".join(part for part in (t(f"build.kind_short.{layer['kind']}"), builder.layer_label(layer, language())) if part)
        values = [str(row.index + 1), name, builder.format_shape(row.output_shape), f"{row.parameters:,}"]
        table.append(dict(zip(columns, values)))
    if checked.valid:
        table.append(dict(zip(columns, ["", t("build.total_row"), "", f"{checked.summary.total_parameters:,}"])))
    return table


def ideas_panel() -> None:
    st.subheader(t("build.ideas_heading"))
    numbers = builder.explanation_numbers()
    for idea in ("receptive", "shared", "pooling", "size", "nonlinear"):
        with st.expander(t(f"build.idea.{idea}.title")):
            st.markdown(t(f"build.idea.{idea}.body", **numbers))


def save_load_share(network: dict) -> None:
    st.subheader(t("build.save_share_heading"))
    save, load, share = st.columns(3, gap="large")
    with save:
        # An edited preset is no longer the preset: its file must not claim the name.
        name = builder.unedited_preset(network, st.session_state.get("preset")) or "network"
        st.download_button(t("build.save"), builder.spec_to_json(network), file_name=f"{name}.json", mime="application/json",
                           on_click="ignore", icon="💾")
        st.caption(t("build.save_help"))
    with load:
        st.file_uploader(t("build.load_file"), type=["json"], key="build_upload", on_change=load_file, max_upload_size=1,
                         help=t("build.load_help"))
        message = st.session_state.pop("build_file_message", None)  # Shown once, after the upload that caused it.
        if message:
            getattr(st, message[0])(message[1])
    with share:
        st.markdown(t("build.share"))
        st.code(builder.share_url(st.context.url, network, language()), language=None, wrap_lines=True)
        st.caption(t("build.share_help"))


def show_link_error() -> None:
    error = st.session_state.pop("link_error", None)
    if error is not None:
        st.error(f"{t('build.link_error')} {error.render(language())}", icon="🔗")


# ----------------------------------------------------------------------------- the page

st.title(t("build.title"))
st.caption(t("build.intro"))
guide()
show_link_error()
work = working_copy()
network = builder.to_spec(work)
st.session_state.network = network
checked = builder.check(network)
start_row(network)
# The keyed container lets style.css stack the two panels when the window is too narrow for both.
with st.container(key="build_panels"):
    editor, overview = st.columns([11, 9], gap="large")
with editor:
    layer_cards(work, checked)
with overview:
    summary_panel(work, checked)
    ideas_panel()
save_load_share(network)
# Like TensorFlow Playground, the address bar always holds the network, so a reload keeps it.
if st.query_params.get("net") != (link := builder.encode_link(network)):
    st.query_params["net"] = link
save_draft()
