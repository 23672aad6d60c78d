"""Starts the pose3d lifter node with config/lifter.yaml (and optionally rviz with config/pose3d.rviz).

    ros2 launch pose3d lifter.launch.py
    ros2 launch pose3d lifter.launch.py keypoints:=/detector/skeletons camera_info:=/camera/camera_info rviz:=true
    ros2 launch pose3d lifter.launch.py model:=fused image:=/camera/image_raw debug_image:=true   # image path
    ros2 launch pose3d lifter.launch.py input:=yolo detections:=/yolo/tracking camera_info:=/camera/camera_info
    ros2 launch pose3d lifter.launch.py input:=hri camera_info:=/camera/camera_info    # ROS4HRI /humans/bodies
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("pose3d")
    args = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "lifter.yaml"]),
                              description="ROS parameter file of the node"),
        DeclareLaunchArgument("input", default_value="skeletons",
                              description="keypoints input: skeletons (pose3d_msgs), yolo (yolo_ros), hri (ROS4HRI)"),
        DeclareLaunchArgument("keypoints", default_value="keypoints", description="pose3d_msgs/Skeleton2DArray input"),
        DeclareLaunchArgument("detections", default_value="/yolo/detections",
                              description="yolo_msgs/DetectionArray input (input:=yolo; /yolo/tracking for track ids)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="sensor_msgs/CameraInfo input"),
        DeclareLaunchArgument("image", default_value="image", description="sensor_msgs/Image input"),
        DeclareLaunchArgument("image_compressed", default_value="image/compressed",
                              description="sensor_msgs/CompressedImage input (with image_transport: compressed)"),
        DeclareLaunchArgument("model", default_value="default",
                              description="a model shipped in share/pose3d/models (default: keypoints; fused: keypoints + image)"),
        DeclareLaunchArgument("debug_image", default_value="false", description="publish ~/debug_image"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/pose3d.rviz"),
    ]
    lifter = Node(
        package="pose3d",
        executable="lifter",
        name="lifter",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                # Every path component a single substitution: launch < 3.4.5 (Jazzy's first releases)
                # refuses a list inside a component.
                "model_path": PathJoinSubstitution(
                    [share, "models", PythonExpression(["'", LaunchConfiguration("model"), ".onnx'"])]
                ),
                "debug_image": ParameterValue(LaunchConfiguration("debug_image"), value_type=bool),
                "input": LaunchConfiguration("input"),
            },
        ],
        remappings=[
            ("keypoints", LaunchConfiguration("keypoints")),
            ("detections", LaunchConfiguration("detections")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("image", LaunchConfiguration("image")),
            ("image/compressed", LaunchConfiguration("image_compressed")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "pose3d.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [lifter, rviz])
