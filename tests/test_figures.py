"""Figures for papers and animations (`skvis_widgets.export`): what is drawn, read back.

The colours expected are the ColorBrewer YlOrRd stops written out here (light
``#ffffcc`` for 0, ``#fd8d3c`` half-way, dark ``#800026`` for the largest value), not
recomputed with the package's colour function. Animations are decoded with Pillow (GIF)
and imageio-ffmpeg (MP4).
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from skvis_widgets import export  # noqa: E402
from skvis_widgets.errors import SkvisError  # noqa: E402
from skvis_widgets.skeleton import MSR_ACTION3D  # noqa: E402

LIGHT = np.array([255, 255, 204]) / 255
MID = np.array([253, 141, 60]) / 255
DARK = np.array([128, 0, 38]) / 255
TOPO = MSR_ACTION3D
HEAD = TOPO.index("head")
HAND = TOPO.index("hand_right")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def pose() -> np.ndarray:
    """A standing pose of the bundled MSR data (joints well apart on the screen)."""
    from skvis_widgets.data import load_msr_action3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(load_msr_action3d().sequences[0][0], np.float32)


@pytest.fixture
def walk(pose) -> np.ndarray:
    """8 frames: the pose sliding 3 cm a frame along x."""
    shift = np.zeros((8, 1, 3), np.float32)
    shift[:, 0, 0] = 0.03 * np.arange(8)
    return pose[None] + shift


def _known_map(t: int, frame: int) -> np.ndarray:
    """Zero everywhere; at ``frame`` the head is 2 (the largest) and the right hand 1."""
    v = np.zeros((t, TOPO.num_joints))
    v[frame, HEAD] = 2.0
    v[frame, HAND] = 1.0
    return v


def _faces(ax) -> np.ndarray:
    """The joints' face colours of the coloured skeleton drawn last on ``ax``."""
    scatters = [c for c in ax.collections if c.get_offsets().shape == (TOPO.num_joints, 2)]
    return scatters[-1].get_facecolors()[:, :3]


def _colorbar_labels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax not in fig.skvis_axes]


# -- figure 4 -----------------------------------------------------------------------------------
def test_frames_figure_draws_early_and_late_frames_in_the_maps_colours(walk, tmp_path):
    values = _known_map(len(walk), frame=6)
    fig = export.frames_figure(walk, values, TOPO, title="Throw", label="sensitivity (a.u.)")
    assert len(fig.skvis_axes) == 2 and len(fig.axes) == 3  # two panels and the colour bar
    assert [ax.get_title() for ax in fig.skvis_axes] == ["(a) frame 2 of 8", "(b) frame 7 of 8"]
    assert fig._suptitle.get_text() == "Throw"
    assert _colorbar_labels(fig) == ["sensitivity (a.u.)"]
    early, late = (_faces(ax) for ax in fig.skvis_axes)
    np.testing.assert_allclose(early, np.tile(LIGHT, (TOPO.num_joints, 1)), atol=1e-6)
    np.testing.assert_allclose(late[HEAD], DARK, atol=1e-6)
    np.testing.assert_allclose(late[HAND], MID, atol=1e-6)
    others = np.delete(late, [HEAD, HAND], axis=0)
    np.testing.assert_allclose(others, np.tile(LIGHT, (len(others), 1)), atol=1e-6)
    # the joints are where the pose projects: +x on the screen's left
    joints = [c for c in fig.skvis_axes[1].collections if c.get_offsets().shape[0] == 20][-1]
    np.testing.assert_allclose(joints.get_offsets()[:, 0], -walk[6, :, 0], atol=1e-6)
    np.testing.assert_allclose(joints.get_offsets()[:, 1], walk[6, :, 1], atol=1e-6)

    fig.savefig(tmp_path / "fig4.pdf")
    fig.savefig(tmp_path / "fig4.svg")
    assert (tmp_path / "fig4.pdf").read_bytes()[:5] == b"%PDF-"
    svg = (tmp_path / "fig4.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "#800026" in svg  # the darkest joint is a vector shape of its own colour


def test_frames_figure_with_chosen_frames_and_a_global_scale(walk):
    values = _known_map(len(walk), frame=3)
    fig = export.frames_figure(walk, values, TOPO, frames=[0, 3, 7], vmax=4.0)
    assert len(fig.skvis_axes) == 3
    np.testing.assert_allclose(_faces(fig.skvis_axes[1])[HEAD], MID, atol=1e-6)  # 2 of 4


@pytest.mark.parametrize(
    "values, frames, match",
    [
        (np.full((8, 20), -1.0), None, "non-negative"),
        (np.full((8, 19), 1.0), None, r"\(8, 20\)"),
        (np.full((8, 20), np.nan), None, "NaN"),
        (np.ones((8, 20)), [8], "out of range"),
        (np.ones((8, 20)), [], "empty"),
    ],
)
def test_frames_figure_refuses_bad_input(walk, values, frames, match):
    with pytest.raises(SkvisError, match=match):
        export.frames_figure(walk, values, TOPO, frames=frames)


# -- the heatmap ----------------------------------------------------------------------------------
def test_heatmap_groups_rows_by_body_part(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.random((9, TOPO.num_joints))
    fig = export.heatmap_figure(values, TOPO, label="sensitivity (a.u.)", title="Kick")
    (ax,) = fig.skvis_axes
    rows = list(fig.skvis_rows)
    expected = [j for part in ("head", "torso", "left_arm", "right_arm", "left_leg", "right_leg")
                for j in TOPO.part_indices(part)]  # fmt: skip
    assert rows == expected and sorted(rows) == list(range(TOPO.num_joints))
    (image,) = ax.get_images()
    np.testing.assert_array_equal(image.get_array(), values[:, rows].T)
    # the drawn colour of one cell is the map's colour of its value
    top = values.max()
    r, t = rows.index(HAND), 4
    drawn = image.to_rgba(image.get_array())[r, t, :3]
    stops = np.array(
        [[255, 255, 204], [255, 237, 160], [254, 217, 118], [254, 178, 76], [253, 141, 60],
         [252, 78, 42], [227, 26, 28], [189, 0, 38], [128, 0, 38]]
    ) / 255  # fmt: skip
    u = values[t, HAND] / top * 8
    want = stops[int(u)] + (u - int(u)) * (stops[min(int(u) + 1, 8)] - stops[int(u)])
    np.testing.assert_allclose(drawn, want, atol=2e-3)
    tick_names = [tick.get_text() for tick in ax.get_yticklabels()]
    assert tick_names[: len(expected)] == [TOPO.pretty(j) for j in expected]
    parts = [t.get_text() for t in ax.texts]
    assert parts == ["head", "torso", "left arm", "right arm", "left leg", "right leg"]
    assert ax.get_title() == "Kick" and ax.get_xlabel() == "frame"
    assert _colorbar_labels(fig) == ["sensitivity (a.u.)"]
    fig.savefig(tmp_path / "heatmap.pdf")
    assert (tmp_path / "heatmap.pdf").stat().st_size > 1000


# -- figures 5 and 2 ------------------------------------------------------------------------------
def _result(pose, moves, *, converged=True, bone_error=0.0):
    """A MaximizationResult-like history: iterate k moves the head ``moves[k]`` metres up."""
    t = 5
    base = np.repeat(pose[None], t, 0)
    history = np.repeat(base[None], len(moves), 0).copy()
    for k, m in enumerate(moves):
        history[k, :, HEAD, 1] += m
    names = ("bone:spine_shoulder-head", "angle:elbow_left")
    residuals = np.zeros((len(moves), t, 2))
    residuals[1:, :, 0] = bone_error
    return SimpleNamespace(
        history=history, converged=converged, residuals=residuals, constraint_names=names
    )


def test_maximization_figure_shows_input_one_step_and_convergence(pose, tmp_path):
    result = _result(pose, [0.0, 0.1, 0.15, 0.2])
    fig = export.maximization_figure(result, TOPO, frame=2)
    assert len(fig.skvis_axes) == 3 and len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.skvis_axes]
    assert titles == ["(a) input", "(b) after one iteration", "(c) at convergence (iteration 3)"]
    assert "frame 3 of 5" in fig._suptitle.get_text()
    assert _colorbar_labels(fig) == ["displacement from the input (m)"]
    a, b, c = (_faces(ax) for ax in fig.skvis_axes)
    np.testing.assert_allclose(a, np.tile(LIGHT, (20, 1)), atol=1e-6)
    np.testing.assert_allclose(b[HEAD], MID, atol=1e-6)  # 0.1 of 0.2 m
    np.testing.assert_allclose(c[HEAD], DARK, atol=1e-6)
    # the head is drawn where the iterate has it
    heads = [c.get_offsets()[HEAD, 1] for c in fig.skvis_axes[2].collections if c.get_offsets().shape[0] == 20]  # fmt: skip
    assert heads == pytest.approx([pose[HEAD, 1], pose[HEAD, 1] + 0.2])  # input ghost, iterate
    fig.savefig(tmp_path / "fig5.svg")
    unconverged = export.maximization_figure(_result(pose, [0, 0.1], converged=False), TOPO)
    assert unconverged.skvis_axes[2].get_title() == "(c) after 1 iterations"


def test_constraint_figure_compares_one_free_and_one_constrained_step(pose, tmp_path):
    free = _result(pose, [0.0, 0.3], bone_error=0.3)
    held = _result(pose, [0.0, 0.15], bone_error=0.0)
    fig = export.constraint_figure(free, held, TOPO)
    assert len(fig.skvis_axes) == 2 and len(fig.axes) == 3
    a, b = fig.skvis_axes
    assert a.get_title().startswith("(a) without anatomical constraints")
    assert "bone lengths within 30 cm" in a.get_title()
    assert b.get_title().startswith("(b) with anatomical constraints")
    assert "bone lengths within 0 cm" in b.get_title()
    np.testing.assert_allclose(_faces(a)[HEAD], DARK, atol=1e-6)
    np.testing.assert_allclose(_faces(b)[HEAD], MID, atol=1e-6)  # one scale for both panels
    assert _colorbar_labels(fig) == ["displacement from the input (m)"]
    fig.savefig(tmp_path / "fig2.pdf")
    other = _result(pose + 0.5, [0.0, 0.1])
    with pytest.raises(SkvisError, match="same input"):
        export.constraint_figure(free, other, TOPO)
    with pytest.raises(SkvisError, match="at least one iteration"):
        export.maximization_figure(_result(pose, [0.0]), TOPO)


def test_figures_take_a_real_maximization_result(pose):
    import torch

    from skvis_widgets.model import SkeletonLSTM
    from skvis_widgets.optimize import maximize_activation

    torch.manual_seed(0)
    model = SkeletonLSTM(20, 4, 8).eval()
    seq = np.repeat(pose[None], 6, 0)
    result = maximize_activation(
        model, seq, target=1, iterations=2, constraints=False, topology=TOPO, progress=False
    )
    fig = export.maximization_figure(result, TOPO)
    assert len(fig.skvis_axes) == 3
    disp = np.linalg.norm(result.history[-1] - result.history[0], axis=-1)
    f = int(np.argmax(disp.sum(-1)))
    assert f"frame {f + 1} of 6" in fig._suptitle.get_text()
    dark = np.argmax(disp[f])
    np.testing.assert_allclose(_faces(fig.skvis_axes[2])[dark], DARK, atol=1e-6)


# -- animations -----------------------------------------------------------------------------------
def _gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB"), dtype=np.float64) / 255)
    return out


def _patch(frame: np.ndarray, xy) -> np.ndarray:
    """The median colour of the 3 x 3 pixels at a joint's centre (column, row)."""
    c, r = (int(round(v)) for v in xy)
    return np.median(frame[r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3), axis=0)


def test_gif_has_every_frame_and_the_joints_colours(walk, tmp_path):
    values = _known_map(len(walk), frame=5)
    path = tmp_path / "walk.gif"
    info = export.save_animation(path, walk, values, topology=TOPO, fps=10, title="Walk")
    frames = _gif_frames(path)
    assert info.frames == len(frames) == len(walk)
    assert frames[0].shape == (info.size[1], info.size[0], 3)
    with Image.open(path) as im:
        assert im.size == info.size
        assert im.info["duration"] == 100  # 10 frames a second
    head = info.joint_pixels[:, 0, HEAD]
    np.testing.assert_allclose(_patch(frames[5], head[5]), DARK, atol=0.05)
    np.testing.assert_allclose(_patch(frames[5], info.joint_pixels[5, 0, HAND]), MID, atol=0.05)
    np.testing.assert_allclose(_patch(frames[4], head[4]), LIGHT, atol=0.05)
    # the body slides 3 cm a frame towards +x, which is the screen's left
    assert np.all(np.diff(head[:, 0]) < 0)
    # the frame number changes between frames, in the bottom-left corner
    corner = slice(int(0.85 * info.size[1]), None), slice(0, int(0.3 * info.size[0]))
    assert not np.array_equal(frames[0][corner], frames[1][corner])


def test_mp4_decodes_to_every_frame_with_the_joints_colours(walk, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    values = _known_map(len(walk), frame=5)
    path = tmp_path / "walk.mp4"
    info = export.save_animation(path, walk, values, topology=TOPO, fps=8, title="Walk")
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) / 255 for b in reader]
    assert len(frames) == info.frames == len(walk)
    assert (w, h) == info.size and meta["fps"] == pytest.approx(8)
    np.testing.assert_allclose(_patch(frames[5], info.joint_pixels[5, 0, HEAD]), DARK, atol=0.12)
    np.testing.assert_allclose(_patch(frames[4], info.joint_pixels[4, 0, HEAD]), LIGHT, atol=0.12)


def test_orbit_camera_turns_round_a_still_pose(pose, tmp_path):
    still = np.repeat(pose[None], 8, 0)
    fixed = export.save_animation(tmp_path / "f.gif", still, topology=TOPO, camera="fixed")
    orbit = export.save_animation(tmp_path / "o.gif", still, topology=TOPO, camera="orbit")
    np.testing.assert_allclose(fixed.joint_pixels, fixed.joint_pixels[:1].repeat(8, 0))
    left, right = TOPO.index("hand_left"), TOPO.index("hand_right")
    gap = orbit.joint_pixels[:, 0, left, 0] - orbit.joint_pixels[:, 0, right, 0]
    assert gap[0] * gap[4] < 0  # half a turn later the hands have swapped sides
    assert len(_gif_frames(tmp_path / "o.gif")) == 8


def test_a_maximization_is_animated_beside_its_input(pose, tmp_path):
    result = _result(pose, [0.0, 0.1, 0.2])
    info = export.save_animation(tmp_path / "am.gif", result, topology=TOPO, title="Throw")
    assert info.joint_pixels.shape == (5, 2, 20, 2)
    frames = _gif_frames(tmp_path / "am.gif")
    original, synthesized = info.joint_pixels[0, 0, HEAD], info.joint_pixels[0, 1, HEAD]
    assert original[0] < synthesized[0]  # the input on the left
    assert synthesized[1] < original[1]  # the synthesized head is 20 cm higher
    np.testing.assert_allclose(_patch(frames[0], original), LIGHT, atol=0.05)
    np.testing.assert_allclose(_patch(frames[0], synthesized), DARK, atol=0.05)


def test_long_animations_show_progress(pose, tmp_path, capsys):
    still = np.repeat(pose[None], 3, 0)
    export.save_animation(tmp_path / "p.gif", still, topology=TOPO, progress=True)
    assert "writing p.gif" in capsys.readouterr().err


def test_animation_refuses_what_it_cannot_write(walk, tmp_path, monkeypatch):
    with pytest.raises(SkvisError, match="expected .gif or .mp4"):
        export.save_animation(tmp_path / "a.avi", walk, topology=TOPO)
    with pytest.raises(SkvisError, match="does not exist"):
        export.save_animation(tmp_path / "no" / "a.gif", walk, topology=TOPO)
    with pytest.raises(SkvisError, match="camera"):
        export.save_animation(tmp_path / "a.gif", walk, topology=TOPO, camera="spin")
    with pytest.raises(SkvisError, match="fps"):
        export.save_animation(tmp_path / "a.gif", walk, topology=TOPO, fps=0)
    with pytest.raises(SkvisError, match="original of shape"):
        export.save_animation(tmp_path / "a.gif", walk, topology=TOPO, original=walk[:3])
    # no ffmpeg anywhere: a clear error, no file
    import builtins

    from matplotlib import animation

    real_import = builtins.__import__

    def no_imageio_ffmpeg(name, *args, **kwargs):
        if name == "imageio_ffmpeg":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_imageio_ffmpeg)
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(SkvisError, match="needs ffmpeg"):
        export.save_animation(tmp_path / "a.mp4", walk, topology=TOPO)
    assert not (tmp_path / "a.mp4").exists()
