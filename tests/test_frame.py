"""Every page runs inside app.py's frame, even when a fresh server's first visitor opens /train directly.

`require_frame` relies on one documented Streamlit behaviour: once `st.navigation` has run,
the app ignores the `pages/` folder in every session. These tests talk to a real
`streamlit run app.py` over its own websocket protocol (what the browser sends and what it
draws), so they fail if a Streamlit upgrade changes that behaviour; tests/test_browser.py
checks the same in Chromium.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import connect

from core.views import i18n
from tests.browser_support import free_port, start_server, stop_process

SIDEBAR = 1  # the root container a delta path starts with for st.sidebar (0 is the main area)
SESSION_SECONDS = 60.0  # a first run imports torch and loads the page; on two busy cores that takes a while


@pytest.fixture
def server(tmp_path):
    """A freshly started server (so still in Streamlit's legacy `pages/` mode) on a free port."""
    port = free_port()
    process = start_server(tmp_path / "runs", port, tmp_path / "server.log")
    yield port
    stop_process(process)


def open_session(port: int, page_name: str) -> tuple[list[str], list[str], list[str]]:
    """Open `page_name` as a new browser tab would: the headings, sidebar widget labels and page-not-found notices it is sent."""
    headings, sidebar_labels, not_found = [], [], []
    request = BackMsg()
    request.rerun_script.page_name = page_name  # what the browser sends for http://…/<page_name>
    request.rerun_script.page_script_hash = ""
    with connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], open_timeout=SESSION_SECONDS) as socket:
        socket.send(request.SerializeToString())
        deadline = time.monotonic() + SESSION_SECONDS
        while time.monotonic() < deadline - 0.1:
            message = ForwardMsg()
            message.ParseFromString(socket.recv(timeout=deadline - time.monotonic()))
            kind = message.WhichOneof("type")
            if kind == "page_not_found":
                not_found.append(message.page_not_found.page_name)
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                if element.WhichOneof("type") == "heading":
                    headings.append(element.heading.body)
                elif element.WhichOneof("type") == "text_input" and message.metadata.delta_path[0] == SIDEBAR:
                    sidebar_labels.append(element.text_input.label)
            elif kind == "script_finished" and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return headings, sidebar_labels, not_found
    raise AssertionError(f"/{page_name} did not finish its run within {SESSION_SECONDS:.0f} s; it drew {headings}")


def test_a_fresh_servers_first_visit_to_a_page_gets_the_frame(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server}/train", timeout=10) as response:
        assert response.status == 200  # the app's HTML: the page itself runs over the websocket
    headings, sidebar_labels, not_found = open_session(server, "train")
    assert i18n.translate("en", "train.title") in headings
    assert i18n.translate("en", "sidebar.owner") in sidebar_labels, "app.py's sidebar is missing: the page ran outside the frame"
    assert not not_found

    # Later sessions, on any page, go through app.py from the start.
    headings, sidebar_labels, not_found = open_session(server, "runs")
    assert i18n.translate("en", "runs.title") in headings
    assert i18n.translate("en", "sidebar.owner") in sidebar_labels and not not_found
